package gfp

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/nonblock"
)

// Direct reclaim: the allocating goroutine runs the zone's shrinkers itself
// (try_to_free_pages), holding the fs_reclaim lock map when its flags allow
// FS, inside a NoReclaim (PF_MEMALLOC) scope so that whatever the shrinkers
// allocate uses the reserves and never recurses into reclaim.

// performReclaim is __perform_reclaim. It returns the pages reclaimed. It
// yields (cond_resched) before reclaim and again after fs_reclaim_release,
// as v6.12's does.
func (z *Zone) performReclaim(order int, gfp Flags) int64 {
	runtime.Gosched() // cond_resched
	FSReclaimAcquire(gfp)
	saved := NoReclaimSave()
	z.throttleDirectReclaim(gfp) // try_to_free_pages begins with it
	z.stats.allocStall.Add(1)
	reclaimed, scanned := z.tryToFreePages(gfp, int64(max(SwapClusterMax, 1<<order)), false)
	z.stats.pgscanDirect.Add(scanned)
	z.stats.pgstealDirect.Add(reclaimed)
	NoReclaimRestore(saved)
	FSReclaimRelease(gfp)
	if reclaimed > 0 {
		z.kswapd.failures.Store(0)
	}
	runtime.Gosched() // cond_resched
	return reclaimed
}

// tryToFreePages is do_try_to_free_pages: shrink at decreasing priorities
// until want pages have come back. It returns the pages reclaimed and the
// objects scanned. Direct reclaim (not proactive, which is cgroup reclaim)
// that has reclaimed nothing by priority 1 yields: shrink_zones'
// consider_reclaim_throttle calls reclaim_throttle(VMSCAN_THROTTLE_NOPROGRESS)
// there, whose one-tick sleep skip_throttle_noprogress skips for a cond_resched
// unless dirty and writeback pages are over half the reclaimable ones, and
// krules has neither.
func (z *Zone) tryToFreePages(gfp Flags, want int64, proactive bool) (reclaimed, scanned int64) {
	id := z.reclaimStart()
	for prio := DefPriority; prio >= 0; prio-- {
		_, sc := z.shrinkSlab(gfp, prio)
		scanned += int64(sc)
		got := z.reclaimed(id)
		if prio == 1 && got == 0 && !proactive {
			runtime.Gosched() // reclaim_throttle's cond_resched
		}
		if got >= want {
			break
		}
	}
	return z.reclaimEnd(id), scanned
}

// reclaimers tracks the goroutines in reclaim and the pages each has freed
// (current->reclaim_state): reclaim's progress is what the reclaiming
// goroutine itself gave back, not what others freed meanwhile. Frees look
// here only while some goroutine is reclaiming.
type reclaimers struct {
	n  atomic.Int32
	mu sync.Mutex
	m  map[int64]*int64
}

// reclaimStart registers the calling goroutine as reclaiming.
func (z *Zone) reclaimStart() int64 {
	id := task.ID()
	r := &z.reclaimers
	r.mu.Lock()
	if r.m == nil {
		r.m = map[int64]*int64{}
	}
	r.m[id] = new(int64)
	r.n.Add(1)
	r.mu.Unlock()
	return id
}

// reclaimEnd unregisters the goroutine and returns the pages it freed.
func (z *Zone) reclaimEnd(id int64) int64 {
	r := &z.reclaimers
	r.mu.Lock()
	n := *r.m[id]
	delete(r.m, id)
	r.n.Add(-1)
	r.mu.Unlock()
	return n
}

// reclaimed returns the pages the reclaiming goroutine id has freed so far.
func (z *Zone) reclaimed(id int64) int64 {
	r := &z.reclaimers
	r.mu.Lock()
	defer r.mu.Unlock()
	return *r.m[id]
}

// noteFreed credits pages freed by the calling goroutine to its reclaim,
// if it is reclaiming.
func (z *Zone) noteFreed(pages int) {
	r := &z.reclaimers
	if r.n.Load() == 0 {
		return
	}
	id := task.ID()
	r.mu.Lock()
	if c := r.m[id]; c != nil {
		*c += int64(pages)
	}
	r.mu.Unlock()
}

// reclaimablePages is zone_reclaimable_pages: with no LRU lists, what the
// shrinkers last said they could free, counted as pages.
func (z *Zone) reclaimablePages() int64 {
	var n int64
	for _, s := range *z.reclaim.shrinkers.Load() {
		n += s.freeable.Load()
	}
	return n
}

// Reclaim runs direct reclaim on behalf of the caller until nrPages pages
// have come back or every priority has been tried, the way memory.reclaim
// does, and returns the pages reclaimed. Like direct reclaim it holds the
// fs_reclaim lock map (when flags has FS) and a NoReclaim scope while the
// shrinkers run, so it records the same lock dependencies without any
// memory pressure. It may sleep.
func (z *Zone) Reclaim(nrPages int64, flags Flags) int64 {
	flags = CurrentContext(flags)
	nonblock.MightSleep()
	if CurrentTaskFlags()&PFMemalloc != 0 {
		return 0 // reclaim does not recurse
	}
	FSReclaimAcquire(flags)
	saved := NoReclaimSave()
	reclaimed, scanned := z.tryToFreePages(flags, nrPages, true)
	z.stats.pgscanDirect.Add(scanned)
	z.stats.pgstealDirect.Add(reclaimed)
	NoReclaimRestore(saved)
	FSReclaimRelease(flags)
	return reclaimed
}
