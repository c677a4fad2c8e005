package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
)

// The strategy workload: for one strategy under one memory condition,
// several goroutines make blockable invalidations on shared address spaces
// while an OOM reaper reaps fresh victims (non-blockable invalidations),
// all through one device on one zone.

// workloadConfig sizes every run.
type workloadConfig struct {
	workers   int           // blockable goroutines; two share an address space
	duration  time.Duration // of each run, when ops is 0
	zoneSize  int           // bytes
	reserve   int           // strategy 3's pool size; 0: one per goroutine that invalidates
	seed      uint64
	newSource func() source
	// started and stopped, when set, are called as the measured part of
	// a run begins and ends (a benchmark's timer).
	started, stopped func()
}

func (c workloadConfig) spaces() int { return max(1, c.workers/2) }

func (c workloadConfig) poolSize() int {
	if c.reserve > 0 {
		return c.reserve
	}
	return c.workers + 1 // every worker and the reaper at once
}

// modeResult is what one mode's callbacks did in a run.
type modeResult struct {
	Mode          string       `json:"mode"`
	Shown         bool         `json:"shown"` // false for strategy 1's non-blockable numbers
	Invalidations int64        `json:"invalidations"`
	PerSecond     float64      `json:"invalidations_per_second"`
	P50us         float64      `json:"p50_us"`
	P99us         float64      `json:"p99_us"`
	MaxUs         float64      `json:"max_us"`
	Passes        int64        `json:"passes"`
	AllocFailures int64        `json:"alloc_failures"`
	Fallbacks     int64        `json:"fallbacks"`
	Emergency     int64        `json:"emergency_page_uses"`
	FromReserve   int64        `json:"from_reserve"`
	EAGAIN        int64        `json:"eagain"`
	FenceWaits    int64        `json:"fence_waits"`
	Errors        int64        `json:"errors"`
	Reports       reportCounts `json:"reports"`
}

// reportCounts are the reports a run raised, by family.
type reportCounts struct {
	Lockdep int            `json:"lockdep"`
	Sleep   int            `json:"sleep_in_atomic"`
	Other   int            `json:"other"`
	ByKind  map[string]int `json:"by_kind,omitempty"`
}

func (r reportCounts) total() int { return r.Lockdep + r.Sleep + r.Other }

func (r *reportCounts) add(k krules.Kind) {
	switch {
	case k == krules.SleepInAtomic:
		r.Sleep++
	case k.Family() == krules.FamilyLockdep:
		r.Lockdep++
	default:
		r.Other++
	}
	if r.ByKind == nil {
		r.ByKind = map[string]int{}
	}
	r.ByKind[k.String()]++
}

// strategyResult is one run: a strategy under a condition.
type strategyResult struct {
	Strategy     string             `json:"strategy"`
	StrategyKey  string             `json:"strategy_key"`
	Condition    string             `json:"condition"`
	ConditionKey string             `json:"condition_key"`
	Check        conditionCheck     `json:"condition_check"`
	Seconds      float64            `json:"seconds"`
	Modes        [nModes]modeResult `json:"modes"`
	ReserveBytes int64              `json:"reserve_bytes"`
	// RegisterFailures counts notifiers strategy 4 could not register
	// for want of their buffer.
	RegisterFailures int64 `json:"register_failures"`
	Reaps            int64 `json:"reaps"`
	ReapRetries      int64 `json:"oom_reaper_retries"`
	BlockableOps     int64 `json:"blockable_operations"`
	// ZoneReserveDips counts allocations during the run that left the
	// zone below min.
	ZoneReserveDips int64        `json:"zone_reserve_dips"`
	Reports         reportCounts `json:"reports"`
	// LockdepOnAfter is whether validation was still on when the run
	// ended: lockdep turns itself off after its first report, so a run
	// with no lockdep report and validation still on was validated to
	// the end.
	LockdepOnAfter bool   `json:"lockdep_on_after"`
	SourceErrors   int64  `json:"source_errors"`
	FirstError     string `json:"first_source_error,omitempty"`
	// Err says why the run failed, if it did.
	Err string `json:"error,omitempty"`
}

// runStrategy runs strategy s under condition c: for cfg.duration, or,
// when ops > 0, until the workers have made ops blockable changes. The
// default lock validator is reset before and after, and every report the
// run raises is collected and counted rather than printed.
func runStrategy(cfg workloadConfig, s strategy, c conditionInfo, ops int64) (strategyResult, error) {
	// Every report is claimed below; what is left for the output is the
	// reaper's pr_info line for each victim, thousands a run.
	defer krules.SetOutput(krules.SetOutput(io.Discard))
	lockclass.Default().Reset()
	defer lockclass.Default().Reset()
	var res strategyResult
	var err error
	// Counted as they come, not kept: strategy 1 below min raises tens of
	// thousands, each with its stack dump.
	var mu sync.Mutex
	var total reportCounts
	var byMode [nModes]reportCounts
	krules.CollectFunc(func() { res, err = runCollected(cfg, s, c, ops) }, func(r *krules.Report) {
		md := blockable
		if r.Goroutine.Name == reaperName {
			md = nonBlockable
		}
		mu.Lock()
		total.add(r.Kind)
		byMode[md].add(r.Kind)
		mu.Unlock()
	})
	res.LockdepOnAfter = lockclass.Default().Enabled()
	res.Reports = total
	for md := range nModes {
		res.Modes[md].Reports = byMode[md]
	}
	return res, err
}

// reaperName is the goroutine the non-blockable callbacks run on: the
// OOM reaper's. killerName picks the victims and hands them to it.
const (
	reaperName = "oom_reaper"
	killerName = "oom_kill"
)

func runCollected(cfg workloadConfig, s strategy, c conditionInfo, ops int64) (res strategyResult, err error) {
	res = strategyResult{Strategy: s.name(), StrategyKey: s.key, Condition: c.name, ConditionKey: c.key}
	z, err := gfp.NewZone(cfg.zoneSize, gfp.WithName("Normal"))
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := z.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("zone: %w", cerr)
		}
	}()
	dev, err := newDevice(s, z, cfg.poolSize())
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := dev.close(); cerr != nil && err == nil {
			err = fmt.Errorf("device: %w", cerr)
		}
	}()
	rng := rand.New(rand.NewPCG(cfg.seed, uint64(s.id)<<8|uint64(c.id)))
	src := cfg.newSource()
	if err := src.setup(dev, cfg.spaces(), cfg.workers, rng); err != nil {
		src.close()
		return res, fmt.Errorf("setup: %w", err)
	}
	defer func() {
		if cerr := src.close(); cerr != nil && err == nil {
			err = fmt.Errorf("teardown: %w", cerr)
		}
	}()
	ms, check, err := establish(c.id, z, cfg.seed)
	if err != nil {
		return res, err
	}
	defer ms.release()
	res.Check = check

	ms.startRun()
	var (
		stop      atomic.Bool
		remaining atomic.Int64
		wg        sync.WaitGroup
		srcErrs   atomic.Int64
		firstErr  atomic.Value
		blockOps  atomic.Int64
		blockEnd  time.Time
		reapEnd   time.Time
	)
	remaining.Store(ops)
	noteErr := func(err error) {
		if srcErrs.Add(1) == 1 {
			firstErr.Store(err.Error())
		}
	}
	if cfg.started != nil {
		cfg.started()
	}
	start := time.Now()
	for w := range cfg.workers {
		wg.Add(1)
		krules.Go(fmt.Sprintf("app/%d", w), func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.seed, uint64(w)+1))
			// Every worker and the reaper make at least one change, however
			// short the run.
			for n := 0; ; n++ {
				if ops > 0 {
					if remaining.Add(-1) < 0 {
						return
					}
				} else if n > 0 && stop.Load() {
					return
				}
				if err := src.blockable(w, rng); err != nil {
					noteErr(err)
				}
				blockOps.Add(1)
			}
		})
	}
	reaperDone := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	krules.Go(killerName, func() {
		defer close(reaperDone)
		rng := rand.New(rand.NewPCG(cfg.seed, 1<<32))
		for n := 0; n == 0 || !stop.Load(); n++ {
			retries, err := src.reap(ctx, dev, rng)
			res.ReapRetries += int64(retries)
			res.Reaps++
			if err != nil {
				noteErr(err)
			}
		}
	})
	if ops == 0 {
		time.Sleep(cfg.duration)
		stop.Store(true)
	}
	wg.Wait()
	blockEnd = time.Now()
	if cfg.stopped != nil {
		cfg.stopped()
	}
	stop.Store(true)
	cancel()
	<-reaperDone
	reapEnd = time.Now()
	ms.endRun(&res.Check)

	res.Seconds = blockEnd.Sub(start).Seconds()
	res.BlockableOps = blockOps.Load()
	res.SourceErrors = srcErrs.Load()
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	res.ReserveBytes = dev.reserveBytes()
	res.RegisterFailures = dev.registerFails.Load()
	res.ZoneReserveDips = z.Stats().ReserveDips - ms.base.ReserveDips
	for md := range nModes {
		end := blockEnd
		if md == nonBlockable {
			end = reapEnd
		}
		res.Modes[md] = dev.stats[md].result(md, end.Sub(start))
	}
	res.Modes[nonBlockable].Shown = !s.bug
	if !check.Held {
		return res, errConditionNotHeld
	}
	return res, nil
}

var errConditionNotHeld = errors.New("the memory condition did not hold when the run started")

// result summarises a mode's counters over a run of length d.
func (st *modeStats) result(md mode, d time.Duration) modeResult {
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	r := modeResult{
		Mode: md.String(), Shown: true,
		Invalidations: st.invalidations.Load(),
		P50us:         us(st.lat.quantile(0.50)),
		P99us:         us(st.lat.quantile(0.99)),
		MaxUs:         us(st.lat.quantile(1)),
		Passes:        st.passes.Load(),
		AllocFailures: st.allocFailures.Load(),
		Fallbacks:     st.fallbacks.Load(),
		Emergency:     st.emergency.Load(),
		FromReserve:   st.fromReserve.Load(),
		EAGAIN:        st.eagain.Load(),
		FenceWaits:    st.fenceWaits.Load(),
		Errors:        st.errors.Load(),
	}
	if d > 0 {
		r.PerSecond = float64(r.Invalidations) / d.Seconds()
	}
	return r
}
