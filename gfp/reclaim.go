package gfp

import (
	"runtime"

	"github.com/krules/krules/nonblock"
)

// Direct reclaim: the allocating goroutine runs the zone's shrinkers itself
// (try_to_free_pages), holding the fs_reclaim lock map when its flags allow
// FS, inside a NoReclaim (PF_MEMALLOC) scope so that whatever the shrinkers
// allocate uses the reserves and never recurses into reclaim.

// performReclaim is __perform_reclaim. It returns the pages reclaimed.
func (z *Zone) performReclaim(order int, gfp Flags) int64 {
	runtime.Gosched() // cond_resched
	FSReclaimAcquire(gfp)
	saved := NoReclaimSave()
	z.stats.allocStall.Add(1)
	reclaimed, scanned := z.tryToFreePages(gfp, int64(max(SwapClusterMax, 1<<order)))
	z.stats.pgscanDirect.Add(scanned)
	z.stats.pgstealDirect.Add(reclaimed)
	NoReclaimRestore(saved)
	FSReclaimRelease(gfp)
	if reclaimed > 0 {
		z.kswapd.failures.Store(0)
	}
	return reclaimed
}

// tryToFreePages is do_try_to_free_pages: shrink at decreasing priorities
// until want pages have come back. It returns the pages reclaimed and the
// objects scanned.
func (z *Zone) tryToFreePages(gfp Flags, want int64) (reclaimed, scanned int64) {
	before := z.pagesFreed()
	for prio := DefPriority; prio >= 0; prio-- {
		_, sc := z.shrinkSlab(gfp, prio)
		scanned += int64(sc)
		reclaimed = z.pagesFreed() - before
		if reclaimed >= want {
			break
		}
	}
	return max(reclaimed, 0), scanned
}

// pagesFreed counts every page returned to the zone so far. Reclaim's
// progress is how much it grew while the shrinkers ran (the kernel counts
// what the reclaiming task freed; frees by other goroutines at the same
// moment count here too).
func (z *Zone) pagesFreed() int64 {
	var n int64
	for i := range z.shards {
		s := &z.shards[i]
		s.mu.Lock()
		n += s.ev.pgfree
		s.mu.Unlock()
	}
	z.mu.Lock()
	n += z.stats.highFrees
	z.mu.Unlock()
	return n
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
	reclaimed, scanned := z.tryToFreePages(flags, nrPages)
	z.stats.pgscanDirect.Add(scanned)
	z.stats.pgstealDirect.Add(reclaimed)
	NoReclaimRestore(saved)
	FSReclaimRelease(flags)
	return reclaimed
}
