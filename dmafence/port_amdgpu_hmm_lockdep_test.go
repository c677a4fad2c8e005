//go:build !krules_nolockdep

package dmafence_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
)

// requireOneCircular asserts that a run raised exactly one report,
// lockdep's circular dependency, by the goroutine named who, whose
// "Chain exists of:" line is chain, and logs it for the reader of -v.
func requireOneCircular(t *testing.T, rec *krulestest.Recorder, who, chain string) {
	t.Helper()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "WARNING: possible circular locking dependency detected", r.Headline)
	require.Equal(t, who, r.Goroutine.Name)
	require.Contains(t, r.Text, "Chain exists of:\n  "+chain+"\n")
	t.Log(r.Text)
}

// run_job allocating with GFP_KERNEL in its signalling section: reclaim
// may run the gfx notifier, which waits for this job's fence. The first
// Resv primed fs_reclaim → mmu_notifier_invalidate_range_start →
// dma_fence_map (dma_resv_lockdep), so the first such allocation closes the
// cycle, before any notifier has run, and lockdep names the primed path.
func TestAMDGPUAllocInRunJob(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	runAMDGPU(t, amdgpuBugs{allocInRunJob: true})
	requireOneCircular(t, rec, "gfx_0.0.0",
		"fs_reclaim --> mmu_notifier_invalidate_range_start --> dma_fence_map")
}

// The gfx notifier reserving the BO before notifier_lock: a CS holding the
// reservation may allocate (dma_resv_reserve_fences, GFP_KERNEL), and
// reclaim run the notifier, which waits for that reservation. The priming's
// reservation_ww_class_mutex → fs_reclaim → mmu_notifier_invalidate_range_start
// decides it at the first invalidation, whatever the CS did.
func TestAMDGPUInvalidateReservesBO(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	runAMDGPU(t, amdgpuBugs{reserveFirst: true})
	requireOneCircular(t, rec, "glxgears",
		"reservation_ww_class_mutex --> fs_reclaim --> mmu_notifier_invalidate_range_start")
}

// The gfx notifier reserving the BO under notifier_lock instead. The CS
// ran first and took notifier_lock under the BOs' reservations, so the
// shortest cycle lockdep finds is that direct inversion, printed as the
// two-lock scenario without a "Chain exists of:" (had no CS run, the
// priming would have closed it through fs_reclaim).
func TestAMDGPUInvalidateReservesBOUnderNotifierLock(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	runAMDGPU(t, amdgpuBugs{reserveUnderMN: true})
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "WARNING: possible circular locking dependency detected", r.Headline)
	require.Equal(t, "glxgears", r.Goroutine.Name)
	require.NotContains(t, r.Text, "Chain exists of:")
	require.Regexp(t, `(?s)is trying to acquire lock:\n\S+ \(reservation_ww_class_mutex\).*`+
		`but task is already holding lock:\n\S+ \(&adev->notifier_lock\)`, r.Text)
	t.Log(r.Text)
}
