package gfp

import (
	"sync"
	"sync/atomic"

	"github.com/krules/krules"
)

// kswapd is the zone's background reclaimer: one goroutine, started the
// first time an allocation wakes it (so zones that never reach their low
// watermark cost no goroutine), reclaiming until the zone is back over its
// high watermark. Close stops it.
type kswapd struct {
	mu       sync.Mutex
	disabled bool
	started  bool
	stopped  bool
	wake     chan struct{}
	quit     chan struct{}
	done     chan struct{}
	order    atomic.Int32 // kswapd_order: the largest order asked for
	failures atomic.Int32 // kswapd_failures
}

// wakeupKswapd is wakeup_kswapd: record the order and wake kswapd, unless
// the zone is balanced already or kswapd has failed MaxReclaimRetries times
// in a row (a direct reclaim that makes progress resets that).
func (z *Zone) wakeupKswapd(order int) {
	k := &z.kswapd
	for {
		o := k.order.Load()
		if int32(order) <= o || k.order.CompareAndSwap(o, int32(order)) {
			break
		}
	}
	if k.failures.Load() >= MaxReclaimRetries || z.balanced(order) {
		return
	}
	wake := k.ensure(z)
	if wake == nil {
		return
	}
	select {
	case wake <- struct{}{}:
		z.stats.kswapdWakeups.Add(1)
	default: // already awake with a wake-up pending
	}
}

// balanced is pgdat_balanced: free pages over the high watermark.
func (z *Zone) balanced(order int) bool {
	return z.watermarkOK(order, allocWmarkHigh, z.nrFree.Load()) > 0
}

// ensure starts the goroutine on first use and returns its wake channel,
// or nil if the zone has no kswapd (disabled or closed).
func (k *kswapd) ensure(z *Zone) chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.disabled || k.stopped {
		return nil
	}
	if !k.started {
		k.started = true
		k.wake = make(chan struct{}, 1)
		k.quit = make(chan struct{})
		k.done = make(chan struct{})
		go z.kswapdRun(k.wake, k.quit, k.done)
	}
	return k.wake
}

// stop ends the goroutine and waits for it.
func (k *kswapd) stop() {
	k.mu.Lock()
	k.stopped = true
	started := k.started
	k.mu.Unlock()
	if started {
		close(k.quit)
		<-k.done
	}
}

// kswapdEnabled reports whether the zone has a kswapd, running or to be
// started: not WithoutKswapd, and not closed.
func (z *Zone) kswapdEnabled() bool {
	k := &z.kswapd
	k.mu.Lock()
	defer k.mu.Unlock()
	return !k.disabled && !k.stopped
}

// KswapdRunning reports whether the zone's kswapd goroutine exists.
func (z *Zone) KswapdRunning() bool {
	k := &z.kswapd
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.started && !k.stopped
}

// kswapdRun is kswapd(): it runs with PF_MEMALLOC and PF_KSWAPD for its
// whole life, and sleeps until woken only when the zone is balanced or
// hopeless (kswapd_try_to_sleep); otherwise it balances again at once.
func (z *Zone) kswapdRun(wake, quit, done chan struct{}) {
	defer close(done)
	krules.SetName("kswapd0")
	defer krules.SetName("")
	saved := MemallocSave(PFMemalloc | PFKswapd)
	defer MemallocRestore(saved)
	k := &z.kswapd
	for {
		order := int(k.order.Load())
		if z.balanced(order) || k.failures.Load() >= MaxReclaimRetries {
			// prepare_kswapd_sleep: nobody may stay throttled while
			// kswapd sleeps; a premature wake-up throttles again.
			z.pfmemalloc.wakeAll()
			select {
			case <-quit:
				return
			case <-wake:
			}
		} else {
			select {
			case <-quit:
				return
			default:
			}
		}
		z.balancePgdat(quit)
	}
}

// balancePgdat reclaims, holding the fs_reclaim map throughout, until the
// zone is over its high watermark for the order asked for. Like the
// kernel's it stays at a priority while that makes progress and lowers it
// when a round frees nothing, down to priority 1 (priority 0, every object
// of every cache, is left to direct reclaim); a run that frees nothing at
// all counts as a failure.
func (z *Zone) balancePgdat(quit chan struct{}) {
	k := &z.kswapd
	order := int(k.order.Swap(0))
	z.stats.pageoutrun.Add(1)
	FSReclaimMap.Acquire() // __fs_reclaim_acquire: kswapd always counts as FS reclaim
	id := z.reclaimStart()
	for prio := DefPriority; prio >= 1 && !z.balanced(order); {
		select {
		case <-quit:
			prio = -1
			continue
		default:
		}
		before := z.reclaimed(id)
		_, sc := z.shrinkSlab(Kernel, prio)
		// Counted after each round, as shrink_inactive_list counts
		// PGSCAN_KSWAPD and PGSTEAL_KSWAPD after each batch: a reader can
		// see the pages free before it sees them counted.
		z.stats.pgscanKswapd.Add(int64(sc))
		z.stats.pgstealKswapd.Add(z.reclaimed(id) - before)
		if z.reclaimed(id) == before {
			prio--
		}
		// balance_pgdat wakes the throttled direct reclaimers as soon as
		// allow_direct_reclaim holds.
		if z.pfmemalloc.active() && z.reservesOK() {
			z.pfmemalloc.wakeAll()
		}
	}
	reclaimed := z.reclaimEnd(id)
	FSReclaimMap.Release()
	if reclaimed > 0 {
		k.failures.Store(0)
	} else if !z.balanced(order) {
		k.failures.Add(1)
	}
}
