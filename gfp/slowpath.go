package gfp

import (
	"runtime"
	"time"
)

// MaxReclaimRetries is MAX_RECLAIM_RETRIES: reclaim rounds without progress
// after which the slow path stops retrying.
const MaxReclaimRetries = 16

// jiffy is the tick the allocator sleeps for when it waits for others: only
// __alloc_pages_may_oom's schedule_timeout_uninterruptible(1) when another
// goroutine holds oom_lock. Every other pause of the slow path is a
// cond_resched (runtime.Gosched), as in v6.12's mm/page_alloc.c, but for
// direct reclaim's wait for kswapd under half the min watermark
// (throttleDirectReclaim).
const jiffy = time.Millisecond

// slowPath is __alloc_pages_slowpath, in the kernel's order, without the
// parts a single zone of goroutines lacks (cpusets, compaction, highatomic
// reserves, OOM victims):
//
//  0. NoFail sanity warnings;
//  1. min watermark and the reserve discounts of the flags;
//  2. wake kswapd; 3. try again;
//  5. retry: the PF_MEMALLOC / Memalloc reserves (unless NoMemalloc);
//  6. fail without DirectReclaim, or under PF_MEMALLOC (no recursion);
//  7. direct reclaim under fs_reclaim and a NoReclaim scope;
//  9. NoRetry gives up; 10. costly orders give up unless RetryMayFail;
//  11. retry while reclaim could still get the zone over min, at most
//     MaxReclaimRetries rounds without progress;
//  14. the OOM hook (OnOOM);
//  16. OOM progress resets the rounds without progress and retries at
//     once, NoFail or not;
//  17. NoFail never gives up (a cond_resched between rounds, no sleep),
//     keeping the count of rounds without progress;
//  18. the failure report.
func (z *Zone) slowPath(order int, gfp Flags, kind uint32, pf TaskFlags) *Page {
	canReclaim := gfp&DirectReclaim != 0
	costly := order > CostlyOrder
	if gfp&NoFail != 0 {
		if order > 1 {
			z.warnOnceSite(warnNoFailOrder, gfp, "WARN_ON_ONCE(order > 1): __GFP_NOFAIL with order %d", order)
		}
		if !canReclaim {
			z.warnOnceSite(warnNoFailNoReclaim, gfp, "WARN_ON_ONCE(!can_direct_reclaim): __GFP_NOFAIL without __GFP_DIRECT_RECLAIM")
		}
		if pf&PFMemalloc != 0 {
			z.warnOnceSite(warnNoFailMemalloc, gfp, "WARN_ON_ONCE(current->flags & PF_MEMALLOC): __GFP_NOFAIL under memalloc_noreclaim_save")
		}
	}

	af := gfpToAllocFlags(gfp, order)
	if af&allocKswapd != 0 {
		z.wakeupKswapd(order)
	}
	if p := z.getPageFromFreelist(order, af, kind); p != nil {
		z.noteReserveDip()
		return p
	}

	noProgressLoops := 0
retry:
	for {
		if z.closed.Load() {
			return nil // allocPagesChecked says ErrClosed; no reclaim, no report
		}
		if af&allocKswapd != 0 {
			z.wakeupKswapd(order)
		}
		if reserve := pfmemallocFlags(gfp, pf); reserve != 0 {
			af = reserve | af&allocKswapd
		}
		if p := z.getPageFromFreelist(order, af, kind); p != nil {
			z.noteReserveDip()
			return p
		}
		if !canReclaim || pf&PFMemalloc != 0 {
			break retry
		}

		p, progress := z.directReclaim(order, gfp, af, kind)
		if p != nil {
			z.noteReserveDip()
			return p
		}
		if gfp&NoRetry != 0 {
			break retry
		}
		if costly && gfp&RetryMayFail == 0 {
			break retry
		}
		if z.shouldReclaimRetry(order, af, progress, &noProgressLoops) {
			continue
		}

		p, oomProgress := z.mayOOM(order, gfp, kind)
		if p != nil {
			return p
		}
		if oomProgress {
			// __alloc_pages_slowpath: "Retry as long as the OOM killer
			// is making progress", straight to retry:, with no pause of
			// its own for any request.
			noProgressLoops = 0
			continue
		}
		break retry
	}

	// nopage:
	if gfp&NoFail != 0 && canReclaim {
		// __alloc_pages_cpuset_fallback with ALLOC_MIN_RESERVE, then
		// around again, forever.
		if p := z.getPageFromFreelist(order, allocWmarkMin|allocMinReserve, kind); p != nil {
			z.noteReserveDip()
			return p
		}
		// retry:, not restart:, which alone zeroes no_progress_loops:
		// with the retries used up and no OOM progress to reset them
		// (RetryMayFail, ThisNode), each further round of reclaim without
		// progress comes straight back here. The kernel only calls
		// cond_resched() before goto retry: a NoFail loop with nothing
		// to reclaim spins, yielding, rather than sleeping a tick.
		runtime.Gosched()
		goto retry
	}
	if z.closed.Load() {
		return nil
	}
	z.stats.failures[order].Add(1)
	z.warnAlloc(gfp, order)
	return nil
}

// noteReserveDip counts allocations that left the zone below min.
func (z *Zone) noteReserveDip() {
	if z.nrFree.Load() < z.wmark[wmarkMin].Load() {
		z.stats.reserveDips.Add(1)
	}
}

// directReclaim is __alloc_pages_direct_reclaim: reclaim, then try again,
// and if that fails drain the page caches and try once more.
func (z *Zone) directReclaim(order int, gfp Flags, af allocFlags, kind uint32) (*Page, bool) {
	progress := z.performReclaim(order, gfp)
	if progress == 0 {
		return nil, false
	}
	if p := z.getPageFromFreelist(order, af, kind); p != nil {
		return p, true
	}
	z.drainAll()
	return z.getPageFromFreelist(order, af, kind), true
}

// shouldReclaimRetry is should_reclaim_retry: count rounds without
// progress, give up after MaxReclaimRetries, and retry only if what reclaim
// could still free plus the free pages would pass the min watermark. Unless
// it gave up on the count, it yields (cond_resched) whatever the watermark
// said, as v6.12 does before returning; the kernel's one-tick sleep for
// PF_WQ_WORKER has no counterpart, krules having no workqueue workers.
func (z *Zone) shouldReclaimRetry(order int, af allocFlags, progress bool, loops *int) bool {
	if progress && order <= CostlyOrder {
		*loops = 0
	} else {
		*loops++
	}
	if *loops > MaxReclaimRetries {
		return false
	}
	available := z.reclaimablePages() + z.nrFree.Load()
	ok := z.watermarkOK(order, af&^allocWmarkMask|allocWmarkMin, available) != 0
	runtime.Gosched()
	return ok
}
