//go:build !krules_nolockdep

package mmnotifier_test

import (
	"testing"

	"github.com/krules/krules/krulestest"
)

// Without MLX5_IB_UPD_XLT_ATOMIC the page-fault path allocates its XLT with
// GFP_KERNEL under umem_mutex, which every invalidation takes: reclaim
// waiting for an invalidation waiting for the fault. The first fault after
// the first invalidation proves it.
func TestMlx5ODPXLTKernelUnderUmemMutex(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	runMlx5(t, mlx5Bugs{xltKernel: true}, 1)
	requireOneCircular(t, rec, "&umem_odp->umem_mutex", "mmu_notifier_invalidate_range_start")
}

// mmu_interval_read_begin waits for the running invalidation, which takes
// umem_mutex: calling it under umem_mutex is the inversion lockdep sees
// through the notifier map read_begin touches.
func TestMlx5ODPReadBeginUnderUmemMutex(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	runMlx5(t, mlx5Bugs{readBeginLocked: true}, 1)
	requireOneCircular(t, rec)
}
