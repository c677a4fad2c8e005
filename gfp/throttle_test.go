package gfp_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
)

// throttleZone is a zone with kswapd whose shrinker holds held pages
// taken from it and frees them, all at once, only when kswapd scans, after
// waiting for allow to be called; the zone is then emptied below half its
// min watermark under PF_MEMALLOC, as reserve users leave it. It returns
// the zone, its shrinker and allow; everything is freed when the test ends,
// kswapd being allowed first if the test did not.
func throttleZone(t *testing.T, held int) (z *gfp.Zone, s *heldShrinker, allow func()) {
	t.Helper()
	allowed := make(chan struct{})
	var once sync.Once
	allow = func() { once.Do(func() { close(allowed) }) }
	z = newZone(t, 16<<20, gfp.WithMinFreeKbytes(1024), gfp.WithShards(1))
	var pages []*gfp.Page
	for range held {
		p, err := z.AllocPages(0, gfp.Kernel)
		require.NoError(t, err)
		pages = append(pages, p)
	}
	s = newHeldShrinker(z, pages, 0)
	s.Scan = func(sc *gfp.ShrinkControl) uint64 {
		if gfp.CurrentTaskFlags()&gfp.PFKswapd == 0 {
			s.calls.Add(1) // direct reclaim's calls only
			return 0       // and it finds nothing
		}
		<-allowed
		n := len(s.held)
		s.release()
		return uint64(n)
	}
	require.NoError(t, z.RegisterShrinker(&s.Shrinker))
	t.Cleanup(func() {
		allow()
		z.UnregisterShrinker(&s.Shrinker)
		s.release()
	})
	emptyZone(t, z)
	return z, s, allow
}

// throttle_direct_reclaim: with free pages at or under half the min
// watermark and reclaimable memory, a direct reclaimer waits, counted in
// pgscan_direct_throttle, until kswapd has brought them back and wakes it;
// it does not scan meanwhile.
func TestDirectReclaimWaitsForKswapdUnderHalfMin(t *testing.T) {
	krulestest.Check(t)
	z, s, allow := throttleZone(t, 600)
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
	require.Positive(t, scans, "direct reclaim scanned while the zone was drained to min")
	allow()
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
	z, _, _ := throttleZone(t, 600)
	start := time.Now()
	p, err := z.AllocPages(0, gfp.NoFS|gfp.NoRetry|gfp.NoWarn)
	require.ErrorIs(t, err, gfp.ErrNoMemory, "kswapd never reclaimed")
	require.Nil(t, p)
	require.GreaterOrEqual(t, time.Since(start), time.Second)
	require.Equal(t, int64(1), z.Stats().PgScanDirectThrottle)
}
