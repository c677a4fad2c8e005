package main

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
)

// The memory conditions a strategy runs under. Each is set up for real on
// the run's zone, and checked (free pages against the watermarks, kswapd)
// before the run starts.

type condition int

const (
	condPlenty condition = iota + 1
	condNearLow
	condBelowMin
	condFaults
)

type conditionInfo struct {
	id    condition
	key   string // for -conditions and benchmark names
	name  string
	setup string // how it is established, for the report
}

var conditions = []conditionInfo{
	{condPlenty, "plenty", "plenty",
		"nothing else allocated"},
	{condNearLow, "nearlow", "near low",
		"a page cache (reclaimable through a shrinker) fills the zone; a writer allocates from it whenever free pages are over halfway from min to low, which wakes kswapd, and takes what kswapd reclaims at once, so kswapd never balances the zone"},
	{condBelowMin, "belowmin", "below min",
		"unreclaimable pages pinned (PF_MEMALLOC) until free pages are halfway between GFP_ATOMIC's floor (37.5% of min) and min; nothing is reclaimable, so only allocations that may use the reserves succeed"},
	{condFaults, "faults", "fault 10%",
		"plenty of memory, and fail_page_alloc at probability 10%, times -1, verbose 0, the kernel's defaults otherwise: ignore-gfp-wait (reclaiming allocations never fail) and min-order 1 (single pages never fail)"},
}

// conditionCheck is what was observed when the run started, and during it.
type conditionCheck struct {
	Free          int64 `json:"free_pages_at_start"`
	Min           int64 `json:"min"`
	Low           int64 `json:"low"`
	High          int64 `json:"high"`
	AtomicFloor   int64 `json:"atomic_floor"`
	KswapdRunning bool  `json:"kswapd_running_at_start"`
	PageOutRuns   int64 `json:"kswapd_runs_before_start"`
	Reclaimable   int64 `json:"reclaimable_pages_at_start"`
	FaultsOn      bool  `json:"fault_injection_on"`
	// Held says whether the condition held at the start; Why says what
	// was seen.
	Held bool   `json:"held"`
	Why  string `json:"observed"`

	// During the run: free pages sampled every millisecond, and what
	// kswapd and fault injection did.
	FreeP5          int64 `json:"free_pages_p5_during"`
	FreeP50         int64 `json:"free_pages_p50_during"`
	FreeP95         int64 `json:"free_pages_p95_during"`
	KswapdRuns      int64 `json:"kswapd_runs_during"`
	KswapdReclaimed int64 `json:"kswapd_reclaimed_pages_during"`
	FaultsInjected  int64 `json:"faults_injected_during"`
}

// memState is a condition in force on a zone.
type memState struct {
	cond            condition
	zone            *gfp.Zone
	cache           *pageCache
	pinned          []*gfp.Page
	faults          *gfp.FaultAttr
	stop            chan struct{}
	done            sync.WaitGroup
	base            gfp.Stats // at the start of the run
	baseKswapdFreed int64

	sampleMu sync.Mutex
	samples  []int64
}

// atomicFloor is how far below min GFP_ATOMIC may take the zone
// (__zone_watermark_ok: min - min/2, then a quarter of that less).
func atomicFloor(min int64) int64 {
	m := min - min/2
	return m - m/4
}

// establish puts cond in force on z and checks it.
func establish(cond condition, z *gfp.Zone, seed uint64) (*memState, conditionCheck, error) {
	ms := &memState{cond: cond, zone: z, stop: make(chan struct{})}
	wm := z.Watermarks()
	switch cond {
	case condNearLow:
		ms.cache = newPageCache(z)
		if err := z.RegisterShrinker(&ms.cache.shrinker); err != nil {
			return nil, conditionCheck{}, err
		}
		target := wm.Min + (wm.Low-wm.Min)/2
		ms.done.Add(1)
		krules.Go("pagecache", func() {
			defer ms.done.Done()
			ms.cache.write(target, ms.stop)
		})
		// Wait for the cache to fill the zone and for kswapd to have
		// balanced it at least once.
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			st := z.Stats()
			if st.PageOutRun > 0 && z.KswapdRunning() && st.Free <= wm.High {
				break
			}
			time.Sleep(time.Millisecond)
		}
	case condBelowMin:
		ms.pin(atomicFloor(wm.Min) + (wm.Min-atomicFloor(wm.Min))/2)
	case condFaults:
		ms.faults = gfp.NewFaultAttr(10, seed)
		ms.faults.Times = -1
		ms.faults.Verbose = 0
		z.InjectPageAllocFaults(ms.faults)
	}
	// The condition must hold when the run starts; give kswapd and the
	// writer a moment to settle into it.
	c := ms.check()
	for deadline := time.Now().Add(2 * time.Second); !c.Held && time.Now().Before(deadline); c = ms.check() {
		time.Sleep(100 * time.Microsecond)
	}
	return ms, c, nil
}

// check observes the zone and says whether the condition holds.
func (ms *memState) check() conditionCheck {
	z := ms.zone
	st := z.Stats()
	wm := st.Watermarks
	c := conditionCheck{
		Free: st.Free, Min: wm.Min, Low: wm.Low, High: wm.High, AtomicFloor: atomicFloor(wm.Min),
		KswapdRunning: z.KswapdRunning(), PageOutRuns: st.PageOutRun, FaultsOn: ms.faults != nil,
	}
	if ms.cache != nil {
		c.Reclaimable = ms.cache.len()
	}
	switch ms.cond {
	case condPlenty:
		c.Held = c.Free > c.High && !c.FaultsOn
		c.Why = fmt.Sprintf("free %d > high %d", c.Free, c.High)
	case condNearLow:
		c.Held = c.Free > c.Min && c.Free <= c.High && c.KswapdRunning && c.PageOutRuns > 0 && c.Reclaimable > 0
		c.Why = fmt.Sprintf("min %d < free %d ≤ high %d; kswapd running, %d runs so far; %d pages reclaimable",
			c.Min, c.Free, c.High, c.PageOutRuns, c.Reclaimable)
	case condBelowMin:
		c.Held = c.Free < c.Min && c.Free > c.AtomicFloor && c.Reclaimable == 0
		c.Why = fmt.Sprintf("GFP_ATOMIC floor %d < free %d < min %d; nothing reclaimable", c.AtomicFloor, c.Free, c.Min)
	case condFaults:
		c.Held = c.Free > c.High && c.FaultsOn
		c.Why = fmt.Sprintf("free %d > high %d; fail_page_alloc on", c.Free, c.High)
	}
	if !c.Held {
		c.Why = "NOT HELD: " + c.Why
	}
	return c
}

// startRun records the zone's counters and starts sampling free pages.
func (ms *memState) startRun() {
	ms.base = ms.zone.Stats()
	if ms.cache != nil {
		ms.baseKswapdFreed = ms.cache.byKswapd.Load()
	}
	ms.done.Add(1)
	go func() {
		defer ms.done.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ms.stop:
				return
			case <-t.C:
				free := ms.zone.Stats().Free
				ms.sampleMu.Lock()
				ms.samples = append(ms.samples, free)
				ms.sampleMu.Unlock()
			}
		}
	}()
}

// endRun fills in what happened during the run.
func (ms *memState) endRun(c *conditionCheck) {
	st := ms.zone.Stats()
	c.KswapdRuns = st.PageOutRun - ms.base.PageOutRun
	// kswapd counts its reclaim when a balancing run ends, and a run that
	// never gets the zone balanced does not end: count what its scans
	// freed instead.
	if ms.cache != nil {
		c.KswapdReclaimed = ms.cache.byKswapd.Load() - ms.baseKswapdFreed
	}
	c.FaultsInjected = st.FaultsInjected - ms.base.FaultsInjected
	ms.sampleMu.Lock()
	s := slices.Clone(ms.samples)
	ms.sampleMu.Unlock()
	if len(s) == 0 {
		s = []int64{st.Free}
	}
	slices.Sort(s)
	c.FreeP5, c.FreeP50, c.FreeP95 = s[len(s)*5/100], s[len(s)/2], s[len(s)*95/100]
}

// release lifts the condition: stops the writer and the sampler, and
// frees every page it holds.
func (ms *memState) release() {
	close(ms.stop)
	ms.done.Wait()
	if ms.faults != nil {
		ms.zone.InjectPageAllocFaults(nil)
	}
	if ms.cache != nil {
		ms.zone.UnregisterShrinker(&ms.cache.shrinker)
		ms.cache.drop()
	}
	for _, p := range ms.pinned {
		ms.zone.FreePages(p, 0)
	}
	ms.pinned = nil
}

// pin takes pages that nothing can reclaim until the zone has target free
// pages, allocating in a PF_MEMALLOC scope (which ignores the watermarks),
// with the per-CPU caches drained so that the count is exact.
func (ms *memState) pin(target int64) {
	z := ms.zone
	saved := gfp.NoReclaimSave()
	defer gfp.NoReclaimRestore(saved)
	for range 100_000 {
		z.DrainPages()
		free := z.Stats().Free
		switch {
		case free > target:
			for range min(free-target, 64) {
				p, err := z.AllocPages(0, gfp.Kernel&^gfp.KswapdReclaim|gfp.NoWarn)
				if err != nil {
					return
				}
				ms.pinned = append(ms.pinned, p)
			}
		case free < target && len(ms.pinned) > 0:
			last := len(ms.pinned) - 1
			z.FreePages(ms.pinned[last], 0)
			ms.pinned = ms.pinned[:last]
		default:
			return
		}
	}
}

// pageCache is reclaimable memory: pages a writer allocates and a shrinker
// frees, oldest first, as the kernel's page cache is reclaimed from its
// LRU.
type pageCache struct {
	zone     *gfp.Zone
	mu       sync.Mutex
	pages    []*gfp.Page
	n        atomic.Int64
	freed    chan struct{} // Scan freed pages: the writer may go on
	byKswapd atomic.Int64  // pages kswapd's scans freed
	shrinker gfp.Shrinker
}

func newPageCache(z *gfp.Zone) *pageCache {
	c := &pageCache{zone: z, freed: make(chan struct{}, 1)}
	c.shrinker = gfp.Shrinker{
		Name:  "pagecache",
		Seeks: gfp.DefaultSeeks,
		Batch: 16, // reclaim in small steps, which the writer takes at once
		Count: func(*gfp.ShrinkControl) uint64 {
			if n := c.n.Load(); n > 0 {
				return uint64(n)
			}
			return gfp.ShrinkEmpty
		},
		Scan: func(sc *gfp.ShrinkControl) uint64 {
			c.mu.Lock()
			n := min(int(sc.NrToScan), len(c.pages))
			victims := slices.Clone(c.pages[:n])
			c.pages = slices.Delete(c.pages, 0, n)
			c.n.Store(int64(len(c.pages)))
			c.mu.Unlock()
			for _, p := range victims {
				c.zone.FreePages(p, 0)
			}
			if gfp.CurrentTaskFlags()&gfp.PFKswapd != 0 {
				c.byKswapd.Add(int64(n))
			}
			select {
			case c.freed <- struct{}{}:
			default:
			}
			return uint64(n)
		},
	}
	return c
}

func (c *pageCache) len() int64 { return c.n.Load() }

// write allocates cache pages whenever the zone has more than target free
// pages, until stop is closed; at the target it waits for kswapd to free
// some. Its allocations never reclaim directly; below low they wake kswapd,
// like a streaming writer's. So kswapd never gets the zone balanced and
// free pages stay near target.
func (c *pageCache) write(target int64, stop chan struct{}) {
	const flags = gfp.HighUserMovable&^gfp.DirectReclaim | gfp.NoWarn
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		default:
		}
		var p *gfp.Page
		err := gfp.ErrNoMemory
		if c.zone.Stats().Free > target {
			p, err = c.zone.AllocPages(0, flags)
		}
		if err != nil {
			select {
			case <-stop:
				return
			case <-c.freed:
			case <-tick.C:
			}
			continue
		}
		c.mu.Lock()
		c.pages = append(c.pages, p)
		c.n.Store(int64(len(c.pages)))
		c.mu.Unlock()
	}
}

// drop frees every cache page.
func (c *pageCache) drop() {
	c.mu.Lock()
	pages := c.pages
	c.pages = nil
	c.n.Store(0)
	c.mu.Unlock()
	for _, p := range pages {
		c.zone.FreePages(p, 0)
	}
}
