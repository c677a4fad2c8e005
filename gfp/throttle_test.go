package gfp_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
)

// throttleZone is a zone with kswapd whose shrinker holds held pages
// taken from it, frees them only when kswapd scans, and makes kswapd wait
// for allow before its first scan; the zone is then emptied below half its
// min watermark under PF_MEMALLOC, as reserve users leave it. It returns the
// zone and its shrinker; everything is freed when the test ends.
func throttleZone(t *testing.T, held int, allow chan struct{}) (*gfp.Zone, *heldShrinker) {
	t.Helper()
	z := newZone(t, 16<<20, gfp.WithMinFreeKbytes(1024), gfp.WithShards(1))
	var pages []*gfp.Page
	for range held {
		p, err := z.AllocPages(0, gfp.Kernel)
		require.NoError(t, err)
		pages = append(pages, p)
	}
	s := newHeldShrinker(z, pages, 32)
	scan := s.Scan
	s.Scan = func(sc *gfp.ShrinkControl) uint64 {
		if gfp.CurrentTaskFlags()&gfp.PFKswapd == 0 {
			return 0 // direct reclaim finds nothing
		}
		<-allow
		return scan(sc)
	}
	require.NoError(t, z.RegisterShrinker(&s.Shrinker))
	t.Cleanup(func() {
		z.UnregisterShrinker(&s.Shrinker)
		s.release()
	})
	emptyZone(t, z)
	return z, s
}

// throttle_direct_reclaim: with free pages at or under half the min
// watermark and reclaimable memory, a direct reclaimer waits, counted in
// pgscan_direct_throttle, until kswapd has brought them back and wakes it;
// it does not scan meanwhile.
func TestDirectReclaimWaitsForKswapdUnderHalfMin(t *testing.T) {
	krulestest.Check(t)
	allow := make(chan struct{})
	z, s := throttleZone(t, 600, allow)
	require.Zero(t, z.Stats().PgScanDirectThrottle)
	scans := s.calls.Load()

	got := make(chan *gfp.Page, 1)
	go func() {
		p, _ := z.AllocPages(0, gfp.Kernel)
		got <- p
	}()
	require.Eventually(t, func() bool { return z.Stats().PgScanDirectThrottle == 1 }, 20*time.Second, time.Millisecond)
	select {
	case <-got:
		t.Fatal("the throttled allocation returned before kswapd reclaimed")
	case <-time.After(20 * time.Millisecond):
	}
	require.Equal(t, scans, s.calls.Load(), "a throttled reclaimer does not scan")
	close(allow)
	p := <-got
	require.NotNil(t, p)
	z.FreePages(p, 0)
	require.Equal(t, int64(1), z.Stats().PgScanDirectThrottle)
	require.Contains(t, z.Stats().String(), "\npgscan_direct_throttle 1\n")
}

// Without FS the caller may hold a filesystem lock kswapd needs, so the
// wait ends after a second (HZ) whether or not kswapd got anywhere; each
// round of direct reclaim waits again (NoRetry makes it one here).
func TestNoFSDirectReclaimIsThrottledForASecondAtMost(t *testing.T) {
	krulestest.Check(t)
	allow := make(chan struct{})
	z, _ := throttleZone(t, 600, allow)
	defer close(allow)
	start := time.Now()
	p, err := z.AllocPages(0, gfp.NoFS|gfp.NoRetry|gfp.NoWarn)
	require.ErrorIs(t, err, gfp.ErrNoMemory, "kswapd never reclaimed")
	require.Nil(t, p)
	require.GreaterOrEqual(t, time.Since(start), time.Second)
	require.Equal(t, int64(1), z.Stats().PgScanDirectThrottle)
}
