package mmnotifier

import (
	"github.com/krules/krules/gfp"
)

// Reclaim of an address space's pages. The kernel reclaims anonymous pages
// from its LRU lists (shrink_folio_list, try_to_unmap); krules has no LRU, so
// each address space registers a shrinker on its zone that does the same
// work: it walks the resident pages like a clock hand, gives recently used
// ones a second chance (their accessed bits, and the notifiers' through
// ClearFlushYoung), and unmaps the rest with a blockable MMU_NOTIFY_CLEAR
// invalidation of each run, freeing the pages after the end. So real memory
// pressure (kswapd, direct reclaim, Zone.Reclaim) drives real invalidations,
// and since shrinkers run holding fs_reclaim, every lock a notifier callback
// takes is ordered after it, as in the kernel.
//
// A reclaimed page is gone: a later touch maps a fresh zeroed page (there
// is no swap).

// registerShrinker registers the address space's shrinker on its zone.
func (mm *MM) registerShrinker() {
	s := &gfp.Shrinker{
		Name:  "mm:" + mm.String(),
		Seeks: gfp.DefaultSeeks,
		Count: func(*gfp.ShrinkControl) uint64 {
			if n := mm.rss.Load(); n > 0 {
				return uint64(n)
			}
			return gfp.ShrinkEmpty
		},
		Scan: mm.shrinkScan,
	}
	if err := mm.zone.RegisterShrinker(s); err != nil {
		panic("mmnotifier: " + err.Error()) // only a shrinker without callbacks or registered twice fails
	}
	mm.shrinker = s
}

// shrinkScan unmaps up to sc.NrToScan pages and returns how many it freed.
func (mm *MM) shrinkScan(sc *gfp.ShrinkControl) uint64 {
	// Swapping an anonymous page out is I/O.
	if sc.GFP&gfp.IO == 0 {
		return gfp.ShrinkStop
	}
	// Reclaim must never wait for an address space: the holder of its
	// mmap_lock may be the one allocating (the OOM reaper's trylock).
	if !mm.mmapLock.TryRLock() {
		return 0
	}
	defer mm.mmapLock.RUnlock()
	if mm.users.Load() <= 0 || len(mm.vmas) == 0 {
		return 0
	}
	var freed, scanned uint64
	want := sc.NrToScan
	// One lap of the clock at most: a page young on the first pass is old
	// on the second.
	for lap := 0; lap < 2*len(mm.vmas)+2 && scanned < want; lap++ {
		from, to := mm.nextVictims(want-scanned, &scanned)
		if from == to {
			continue
		}
		r := NewRange(mm, EventClear, from, to)
		InvalidateRangeStart(&r)
		mm.ptl.Lock()
		pages := mm.zap(nil, from, to)
		mm.ptl.Unlock()
		InvalidateRangeEnd(&r)
		mm.freePages(pages)
		freed += uint64(len(pages))
	}
	sc.NrScanned = max(scanned, 1)
	return freed
}

// nextVictims advances the clock hand over at most budget resident pages
// and returns the first run [from, to) of old ones it finds in one VMA
// (from == to if none), clearing the accessed bits of the young ones it
// passes (folio_referenced). It counts the pages it looked at in scanned.
func (mm *MM) nextVictims(budget uint64, scanned *uint64) (from, to uint64) {
	mm.ptl.Lock()
	defer mm.ptl.Unlock()
	i := mm.find(mm.reclaimCursor)
	if i == len(mm.vmas) {
		i = 0
	}
	v := mm.vmas[i]
	stop := v.end // where the hand stops, if before the end of v
	mm.pt.walk(max(v.start, mm.reclaimCursor), v.end, func(addr uint64, e *pte) bool {
		if budget == 0 {
			stop = addr
			return false
		}
		if from != to && addr != to { // a hole ends the run
			stop = to
			return false
		}
		budget--
		*scanned++
		young := e.flags&pteYoung != 0
		e.flags &^= pteYoung
		if mm.notifierClearFlushYoung(addr, addr+PageSize) {
			young = true
		}
		if young {
			if from != to {
				stop = addr + PageSize // its second chance is given: resume after it
				return false
			}
			return true
		}
		if from == to {
			from = addr
		}
		to = addr + PageSize
		return true
	})
	switch {
	case stop < v.end:
		mm.reclaimCursor = stop
	case i == len(mm.vmas)-1:
		mm.reclaimCursor = 0
	default:
		mm.reclaimCursor = v.end
	}
	return from, to
}
