package gfp_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
)

// recorder is a shrinker that keeps a constant count and records every
// scan request; what Scan returns comes from ret.
type recorder struct {
	gfp.Shrinker
	mu    sync.Mutex
	scans []uint64
	ret   func(sc *gfp.ShrinkControl) uint64
}

func newRecorder(count uint64, seeks, batch int, ret func(*gfp.ShrinkControl) uint64) *recorder {
	r := &recorder{ret: ret}
	r.Shrinker = gfp.Shrinker{
		Name:  "recorder",
		Seeks: seeks,
		Batch: batch,
		Count: func(*gfp.ShrinkControl) uint64 { return count },
		Scan: func(sc *gfp.ShrinkControl) uint64 {
			r.mu.Lock()
			r.scans = append(r.scans, sc.NrToScan)
			r.mu.Unlock()
			return r.ret(sc)
		},
	}
	return r
}

func (r *recorder) Scans() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.scans...)
}

// reclaimOnce runs one full reclaim pass (priorities 12 down to 0) that can
// never reach its goal.
func reclaimOnce(z *gfp.Zone) { z.Reclaim(1<<40, gfp.Kernel) }

func TestShrinkerTrimHardScansInBatches(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 1<<20)
	// seeks 0: delta = freeable/2 = 500 at every priority; batches of 128
	// until less than a batch is left.
	r := newRecorder(1000, 0, 0, func(*gfp.ShrinkControl) uint64 { return 0 })
	require.NoError(t, z.RegisterShrinker(&r.Shrinker))
	defer z.UnregisterShrinker(&r.Shrinker)
	z.Reclaim(1<<40, gfp.Kernel) // full pass
	scans := r.Scans()
	require.Equal(t, []uint64{128, 128, 128}, scans[:3], "first priority: 500 to scan, three whole batches")
	// The unscanned remainder (500-384 = 116) is deferred and adds up at
	// each priority (nr_deferred >> priority), so the last priority scans
	// more than the first; the deferred work never exceeds 2·freeable.
	require.Greater(t, len(scans), 3*13)
	require.LessOrEqual(t, r.Deferred(), int64(2000))
	require.Greater(t, r.Deferred(), int64(0))
}

func TestShrinkerSeeksAndSmallCaches(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 1<<20)
	// 4096 objects, seeks 2: delta = (4096>>p)·4/2, which is below a batch
	// until priority 6 (128): nothing is scanned at priorities 12..7 and the
	// work is deferred.
	r := newRecorder(4096, gfp.DefaultSeeks, 0, func(*gfp.ShrinkControl) uint64 { return 0 })
	require.NoError(t, z.RegisterShrinker(&r.Shrinker))
	reclaimOnce(z)
	require.NotEmpty(t, r.Scans())
	for _, n := range r.Scans() {
		require.LessOrEqual(t, n, uint64(gfp.ShrinkBatch))
	}
	z.UnregisterShrinker(&r.Shrinker)

	// A cache smaller than a batch is scanned only once deferred work
	// covers all of it, and then whole.
	small := newRecorder(20, 0, 0, func(*gfp.ShrinkControl) uint64 { return 0 })
	require.NoError(t, z.RegisterShrinker(&small.Shrinker))
	defer z.UnregisterShrinker(&small.Shrinker)
	reclaimOnce(z)
	require.NotEmpty(t, small.Scans())
	for _, n := range small.Scans() {
		require.GreaterOrEqual(t, n, uint64(20), "scanned only when the total reaches freeable")
	}
}

func TestShrinkerBatchAndNrScanned(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 1<<20)
	// Batch 10, trim hard: 50 to scan at the first priority, but the
	// shrinker reports it looked at 25 each time, so two calls.
	r := newRecorder(100, 0, 10, func(sc *gfp.ShrinkControl) uint64 {
		sc.NrScanned = 25
		return 1
	})
	require.NoError(t, z.RegisterShrinker(&r.Shrinker))
	defer z.UnregisterShrinker(&r.Shrinker)
	z.Reclaim(1<<40, gfp.Kernel)
	require.Equal(t, []uint64{10, 10}, r.Scans()[:2])
}

func TestShrinkStopEndsThePass(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 1<<20)
	r := newRecorder(1000, 0, 0, func(*gfp.ShrinkControl) uint64 { return gfp.ShrinkStop })
	require.NoError(t, z.RegisterShrinker(&r.Shrinker))
	defer z.UnregisterShrinker(&r.Shrinker)
	reclaimOnce(z)
	require.Len(t, r.Scans(), gfp.DefPriority+1, "one call per priority, each stopped at once")
}

func TestEmptyShrinkersAreNotScanned(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 1<<20)
	for _, count := range []uint64{0, gfp.ShrinkEmpty} {
		r := newRecorder(count, 0, 0, func(*gfp.ShrinkControl) uint64 { panic("scanned") })
		require.NoError(t, z.RegisterShrinker(&r.Shrinker))
		reclaimOnce(z)
		z.UnregisterShrinker(&r.Shrinker)
		require.Empty(t, r.Scans())
		require.Zero(t, r.Deferred())
	}
}

func TestShrinkerRegistration(t *testing.T) {
	z := newZone(t, 1<<20)
	require.Error(t, z.RegisterShrinker(&gfp.Shrinker{Name: "incomplete"}))
	r := newRecorder(10, 0, 0, func(*gfp.ShrinkControl) uint64 { return 0 })
	require.NoError(t, z.RegisterShrinker(&r.Shrinker))
	require.Error(t, z.RegisterShrinker(&r.Shrinker), "twice")
	z.UnregisterShrinker(&r.Shrinker)
	z.UnregisterShrinker(&r.Shrinker) // harmless
	require.NoError(t, z.RegisterShrinker(&r.Shrinker), "again after unregistering")
	z.UnregisterShrinker(&r.Shrinker)
}

// UnregisterShrinker waits for a scan in progress (shrinker_free).
func TestUnregisterWaitsForRunningScans(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 1<<20)
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	var finished atomic.Bool
	r := newRecorder(1000, 0, 0, func(*gfp.ShrinkControl) uint64 {
		once.Do(func() {
			close(entered)
			<-release
			finished.Store(true)
		})
		return gfp.ShrinkStop
	})
	require.NoError(t, z.RegisterShrinker(&r.Shrinker))
	done := make(chan struct{})
	go func() { reclaimOnce(z); close(done) }()
	<-entered
	unregistered := make(chan struct{})
	go func() { z.UnregisterShrinker(&r.Shrinker); close(unregistered) }()
	select {
	case <-unregistered:
		t.Fatal("unregistered during a scan")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-unregistered
	require.True(t, finished.Load())
	<-done
}

// Zone.Reclaim is reclaim on the caller's behalf: it applies the caller's
// allocation scopes (current_gfp_context), so a NOFS scope reaches the
// shrinkers, and under PF_MEMALLOC it does nothing, since reclaim does not
// recurse.
func TestReclaimHonoursTheCallersScopes(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20, gfp.WithoutKswapd())
	var seen atomic.Uint32
	var calls atomic.Int64
	r := newRecorder(1<<20, gfp.DefaultSeeks, 0, func(sc *gfp.ShrinkControl) uint64 {
		calls.Add(1)
		seen.Store(uint32(sc.GFP))
		return gfp.ShrinkStop
	})
	require.NoError(t, z.RegisterShrinker(&r.Shrinker))
	defer z.UnregisterShrinker(&r.Shrinker)

	saved := gfp.NoFSSave()
	z.Reclaim(1, gfp.Kernel)
	gfp.NoFSRestore(saved)
	require.Equal(t, gfp.NoFS, gfp.Flags(seen.Load()))

	n := calls.Load()
	saved = gfp.NoReclaimSave()
	require.Zero(t, z.Reclaim(1, gfp.Kernel))
	gfp.NoReclaimRestore(saved)
	require.Equal(t, n, calls.Load(), "no shrinker ran under PF_MEMALLOC")
}
