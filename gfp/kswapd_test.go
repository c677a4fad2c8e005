package gfp_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// kswapd wakes when an allocation finds the zone below its low watermark,
// reclaims through the shrinkers (named kswapd0, with PF_MEMALLOC and
// PF_KSWAPD) until the zone is over its high watermark, and stops with the
// zone. VerifyTestMain's goleak check proves it is gone.
func TestKswapdReclaimsToHighAndStops(t *testing.T) {
	krulestest.Check(t)
	z, err := gfp.NewZone(16<<20, gfp.WithMinFreeKbytes(1024))
	require.NoError(t, err)
	require.False(t, z.KswapdRunning(), "started lazily")
	wm := z.Watermarks()

	// Down to min without waking kswapd, which would otherwise fail to
	// reclaim anything, MAX_RECLAIM_RETRIES times, and give up.
	pages := drainTo(t, z, gfp.Kernel&^gfp.KswapdReclaim|gfp.NoWarn)
	require.False(t, z.KswapdRunning())
	stalls := z.Stats().AllocStall
	var name atomic.Value
	var flags atomic.Uint32
	var underFSReclaim atomic.Bool
	s := newHeldShrinker(z, pages[:600], 8)
	rest := pages[600:]
	s.Shrinker.Scan = func(sc *gfp.ShrinkControl) uint64 {
		name.Store(krules.CurrentGoroutine().Name)
		flags.Store(uint32(gfp.CurrentTaskFlags()))
		underFSReclaim.Store(lockclass.IsHeld(gfp.FSReclaimMap))
		return s.scanHeld(sc)
	}
	require.NoError(t, z.RegisterShrinker(&s.Shrinker))

	// An atomic allocation below low: the fast path fails, the slow path
	// wakes kswapd and takes a page from the reserve.
	p, err := z.AllocPages(0, gfp.Atomic)
	require.NoError(t, err)
	require.True(t, z.KswapdRunning())
	// The pages come free before kswapd counts them (after each round, as
	// the kernel's counters after each batch): wait for both.
	require.Eventually(t, func() bool {
		st := z.Stats()
		return st.Free > wm.High && st.PgStealKswapd > 0 && st.PgScanKswapd > 0
	}, 5*time.Second, time.Millisecond, "%+v", z.Stats())
	st := z.Stats()
	require.NotZero(t, st.KswapdWakeups)
	require.NotZero(t, st.PageOutRun)
	require.Equal(t, stalls, st.AllocStall, "nobody reclaimed directly")
	require.Equal(t, "kswapd0", name.Load())
	require.Equal(t, gfp.PFMemalloc|gfp.PFKswapd, gfp.TaskFlags(flags.Load()))
	require.True(t, underFSReclaim.Load(), "kswapd holds fs_reclaim while it shrinks")
	require.Less(t, st.Free, int64(wm.High+200), "kswapd stops once balanced")

	z.UnregisterShrinker(&s.Shrinker)
	s.release()
	z.FreePages(p, 0)
	for _, p := range rest {
		z.FreePages(p, 0)
	}
	require.NoError(t, z.Close())
	require.False(t, z.KswapdRunning())
}

// A kswapd that cannot reclaim anything stops being woken after
// MAX_RECLAIM_RETRIES failed runs.
func TestKswapdGivesUpAfterRepeatedFailures(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 16<<20, gfp.WithMinFreeKbytes(1024))
	pages := pressure(t, z)
	_ = pages
	var calls atomic.Int64
	s := liar(&calls)
	require.NoError(t, z.RegisterShrinker(s))
	defer z.UnregisterShrinker(s)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && z.Stats().PageOutRun < gfp.MaxReclaimRetries {
		p, err := z.AllocPages(0, gfp.Atomic)
		require.NoError(t, err)
		z.FreePages(p, 0)
		time.Sleep(time.Millisecond)
	}
	settled := func() int64 { // wait for a run in progress to end
		for {
			r := z.Stats().PageOutRun
			time.Sleep(30 * time.Millisecond)
			if z.Stats().PageOutRun == r {
				return r
			}
		}
	}
	runs := settled()
	require.GreaterOrEqual(t, runs, int64(gfp.MaxReclaimRetries))
	wakeups := z.Stats().KswapdWakeups
	for range 20 {
		p, err := z.AllocPages(0, gfp.Atomic)
		require.NoError(t, err)
		z.FreePages(p, 0)
	}
	require.Equal(t, runs, settled(), "no more runs")
	require.Equal(t, wakeups, z.Stats().KswapdWakeups, "no more wake-ups")
	require.Contains(t, z.ZoneInfo(), "node_unreclaimable:  1")
}

func TestZoneWithoutKswapd(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20, gfp.WithoutKswapd())
	pressure(t, z)
	p, err := z.AllocPages(0, gfp.Atomic)
	require.NoError(t, err)
	z.FreePages(p, 0)
	require.False(t, z.KswapdRunning())
	require.Zero(t, z.Stats().KswapdWakeups)
}

// The fast path (get_page_from_freelist at ALLOC_WMARK_LOW) fails below the
// low watermark even where the min watermark would pass, so the slow path
// wakes kswapd: a GFP_KERNEL allocation between min and low wakes it and
// still succeeds.
func TestAllocationBetweenMinAndLowWakesKswapd(t *testing.T) {
	krulestest.Check(t)
	z, err := gfp.NewZone(16<<20, gfp.WithMinFreeKbytes(1024), gfp.WithShards(1))
	require.NoError(t, err)
	wm := z.Watermarks()
	var pages []*gfp.Page
	for z.Stats().Free > wm.Low {
		p, err := z.AllocPages(0, gfp.Kernel&^gfp.KswapdReclaim)
		require.NoError(t, err)
		pages = append(pages, p)
	}
	require.Greater(t, z.Stats().Free, wm.Min+1)
	require.False(t, z.KswapdRunning())
	p, err := z.AllocPages(0, gfp.Kernel)
	require.NoError(t, err)
	pages = append(pages, p)
	require.True(t, z.KswapdRunning())
	for _, p := range pages {
		z.FreePages(p, 0)
	}
	require.NoError(t, z.Close())
}
