package gfp

import (
	"sync"
	"time"
)

// Direct reclaim throttling (throttle_direct_reclaim, mm/vmscan.c): a
// goroutine entering direct reclaim while the zone's free pages are at or
// under half its min watermark, and there is reclaimable memory, waits on
// pfmemalloc_wait until kswapd has brought them back, so that the reserves
// stay for PF_MEMALLOC reclaim to make progress with. Only kswapd wakes it.

// pfmemallocWait is pgdat->pfmemalloc_wait: a channel closed to wake every
// waiter, nil while none waits.
type pfmemallocWait struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns the channel the next wakeAll closes.
func (w *pfmemallocWait) wait() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

// active is waitqueue_active.
func (w *pfmemallocWait) active() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch != nil
}

// wakeAll is wake_up_all.
func (w *pfmemallocWait) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// reservesOK is allow_direct_reclaim's test: true once kswapd has failed
// MaxReclaimRetries times, when the zone has nothing reclaimable (it then
// counts for no reserve) or no min watermark, and otherwise while the free
// pages are over half the min watermark.
func (z *Zone) reservesOK() bool {
	if z.kswapd.failures.Load() >= MaxReclaimRetries {
		return true
	}
	reserve := z.wmark[wmarkMin].Load()
	if reserve == 0 || z.reclaimablePages() == 0 {
		return true
	}
	return z.nrFree.Load() > reserve/2
}

// allowDirectReclaim is allow_direct_reclaim as a throttled goroutine calls
// it: reservesOK, and when that is false a wake-up for kswapd, which must be
// awake while goroutines are throttled (the kernel wakes it only if it
// sleeps; a wake-up sent while it runs makes it look once more).
func (z *Zone) allowDirectReclaim() bool {
	if z.reservesOK() {
		return true
	}
	if wake := z.kswapd.ensure(z); wake != nil {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	return false
}

// throttleDirectReclaim is throttle_direct_reclaim for the calling
// goroutine, about to reclaim with flags gfp: unless allowDirectReclaim, it
// counts pgscan_direct_throttle and waits to be woken by kswapd with the
// condition true, for at most a second (HZ) without FS, since the caller
// may hold a filesystem lock kswapd waits for. No goroutine is exempt:
// kernel threads are, and the only one here, kswapd, never reclaims
// directly. A zone without kswapd (WithoutKswapd) never throttles, having
// nobody to wake its waiters, nor does a closed one.
func (z *Zone) throttleDirectReclaim(gfp Flags) {
	if !z.kswapdEnabled() || z.allowDirectReclaim() {
		return
	}
	z.stats.pgscanDirectThrottle.Add(1)
	var timeout <-chan time.Time
	if gfp&FS == 0 {
		t := time.NewTimer(time.Second)
		defer t.Stop()
		timeout = t.C
	}
	for {
		woken := z.pfmemalloc.wait()
		if z.closed.Load() || z.allowDirectReclaim() {
			return
		}
		select {
		case <-woken:
		case <-timeout:
			return
		}
	}
}
