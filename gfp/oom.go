package gfp

import (
	"sync"
	"sync/atomic"
	"time"
)

// OOMControl describes the allocation that ran out of memory (struct
// oom_control).
type OOMControl struct {
	Zone  *Zone
	Order int
	GFP   Flags
}

// oomState holds oom_lock and the OOM notifier chain.
type oomState struct {
	lock     sync.Mutex
	mu       sync.Mutex
	handlers atomic.Pointer[[]*oomHandler]
}

type oomHandler struct{ fn func(OOMControl) int }

// OnOOM registers fn on the zone's OOM notifier chain (register_oom_notifier).
// No OOM killer can kill goroutines, so when an allocation has exhausted
// reclaim this is the last resort: each fn may free memory and returns the
// number of pages it freed. Any pages freed count as progress and the
// allocation retries; otherwise it fails (or, with NoFail, keeps trying).
// The OOM path is skipped for costly orders and RetryMayFail/ThisNode
// allocations, as in the kernel. The returned function unregisters fn.
func (z *Zone) OnOOM(fn func(OOMControl) (freed int)) (unregister func()) {
	h := &oomHandler{fn}
	z.oom.mu.Lock()
	var list []*oomHandler
	if p := z.oom.handlers.Load(); p != nil {
		list = append(list, *p...)
	}
	list = append(list, h)
	z.oom.handlers.Store(&list)
	z.oom.mu.Unlock()
	return func() {
		z.oom.mu.Lock()
		defer z.oom.mu.Unlock()
		var keep []*oomHandler
		for _, x := range *z.oom.handlers.Load() {
			if x != h {
				keep = append(keep, x)
			}
		}
		z.oom.handlers.Store(&keep)
	}
}

// mayOOM is __alloc_pages_may_oom: take oom_lock (or report progress and
// wait a tick if another goroutine holds it), try once more at the high
// watermark, then call the OOM notifiers. A NoFail allocation then may use
// every reserve, whether the notifiers freed pages or (with a warning)
// they did not.
func (z *Zone) mayOOM(order int, gfp Flags, kind uint32) (*Page, bool) {
	if !z.oom.lock.TryLock() {
		time.Sleep(jiffy)
		return nil, true
	}
	defer z.oom.lock.Unlock()
	if p := z.getPageFromFreelist(order, allocWmarkHigh|allocCPUSet, kind); p != nil {
		return p, false
	}
	if order > CostlyOrder || gfp&(RetryMayFail|ThisNode) != 0 {
		return nil, false
	}
	if z.outOfMemory(order, gfp) {
		if gfp&NoFail != 0 {
			return z.getPageFromFreelist(order, allocNoWatermark, kind), true
		}
		return nil, true
	}
	if gfp&NoFail != 0 {
		z.warnOnceGFP(warnNoFailOOM, gfp, "WARN_ON_ONCE_GFP(gfp_mask & __GFP_NOFAIL): out of memory and nothing to kill, order %d", order)
		return z.getPageFromFreelist(order, allocNoWatermark, kind), true
	}
	return nil, false
}

// outOfMemory is out_of_memory() without the killer: the notifier chain,
// whose freed pages count as progress. The kernel then claims progress for
// allocations without FS (it does not kill for them, and waits for someone
// else to); with nobody to kill anywhere, krules lets those fail instead.
func (z *Zone) outOfMemory(order int, gfp Flags) bool {
	z.stats.oomCalls.Add(1)
	p := z.oom.handlers.Load()
	if p == nil {
		return false
	}
	freed := 0
	for _, h := range *p {
		freed += h.fn(OOMControl{Zone: z, Order: order, GFP: gfp})
	}
	return freed > 0
}
