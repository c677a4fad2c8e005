package gfp

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// do_shrink_slab's arithmetic, pass by pass, on a shrinker of 1000 objects
// whose Scan either does all it is asked or stops at once: the delta
// (freeable >> priority, times 4 / seeks, or half of it all with seeks 0),
// the deferred work scaled by priority, the scan capped at twice the
// freeable objects, and the carried-over work capped the same way.
func TestShrinkArithmeticIsDoShrinkSlabs(t *testing.T) {
	const freeable = 1000
	newShrinker := func(seeks int, stop *bool) *Shrinker {
		return &Shrinker{
			Name:  "arith",
			Seeks: seeks,
			Count: func(*ShrinkControl) uint64 { return freeable },
			Scan: func(sc *ShrinkControl) uint64 {
				if *stop {
					return ShrinkStop
				}
				return sc.NrToScan
			},
		}
	}
	for _, tc := range []struct {
		name          string
		seeks, prio   int
		deferredFirst bool // a first pass at priority 0 that stops at once
		scanned       uint64
		deferred      int64
	}{
		// Batches of ShrinkBatch while at least a batch (or all of it) is
		// left; the rest is carried over.
		{"seeks 0: half of it all", 0, 12, false, 3 * ShrinkBatch, 500 - 3*ShrinkBatch},
		{"seeks 1, priority 0: capped at 2*freeable", 1, 0, false, 15 * ShrinkBatch, 2 * freeable},
		{"default seeks, priority 4: less than a batch", DefaultSeeks, 4, false, 0, 124},
		// The first pass defers min(2000, 2*freeable); the second wants
		// 2000>>4 of it plus its own 124, scans a batch and carries the
		// rest of the 2124.
		{"deferred work scaled by priority", DefaultSeeks, 4, true, ShrinkBatch, 2000 + 124 - ShrinkBatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stop := false
			s := newShrinker(tc.seeks, &stop)
			if tc.deferredFirst {
				stop = true
				_, scanned := s.shrink(Kernel, 0)
				require.Zero(t, scanned)
				require.EqualValues(t, 2*freeable, s.Deferred(), "carried over, capped at 2*freeable")
				stop = false
			}
			_, scanned := s.shrink(Kernel, tc.prio)
			require.Equal(t, tc.scanned, scanned)
			require.Equal(t, tc.deferred, s.Deferred())
		})
	}
	// A pass that stops at once carries its whole delta over, capped.
	stop := true
	s := newShrinker(1, &stop)
	s.shrink(Kernel, 0)
	require.EqualValues(t, 2*freeable, s.Deferred(), "4000 capped at 2*freeable")
}

// A Scan that reports more scanned than it was asked to scan (nr_scanned)
// uses up that much of the scan: do_shrink_slab takes nr_scanned, not
// nr_to_scan, off total_scan. Half of 1000 objects is 500: two batches
// that each count twice a batch leave -12, so no third batch.
func TestShrinkCountsWhatScanSaysItScanned(t *testing.T) {
	calls := 0
	s := &Shrinker{
		Name:  "overscan",
		Seeks: 0,
		Count: func(*ShrinkControl) uint64 { return 1000 },
		Scan: func(sc *ShrinkControl) uint64 {
			calls++
			sc.NrScanned = 2 * sc.NrToScan
			return sc.NrToScan
		},
	}
	_, scanned := s.shrink(Kernel, 12)
	require.Equal(t, 2, calls)
	require.EqualValues(t, 4*ShrinkBatch, scanned)
}

// zone_reclaimable_pages, which krules takes from the shrinkers' last
// Count, forgets a shrinker's objects once its Count says it has none:
// should_reclaim_retry must not go on counting pages that are gone.
func TestReclaimablePagesForgetsAnEmptyShrinker(t *testing.T) {
	z := quietZone(t)
	var n uint64 = 100
	s := &Shrinker{
		Name:  "emptied",
		Count: func(*ShrinkControl) uint64 { return n },
		Scan:  func(*ShrinkControl) uint64 { return ShrinkStop },
	}
	require.NoError(t, z.RegisterShrinker(s))
	defer z.UnregisterShrinker(s)
	s.shrink(Kernel, DefPriority)
	require.EqualValues(t, 100, z.reclaimablePages())
	n = 0
	s.shrink(Kernel, DefPriority)
	require.Zero(t, z.reclaimablePages())
}
