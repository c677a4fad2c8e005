//go:build !krules_nolockdep

package mmnotifier_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
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
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "WARNING: possible circular locking dependency detected", r.Headline)
	require.Contains(t, r.Text, "&umem_odp->umem_mutex")
	require.Contains(t, r.Text, "mmu_notifier_invalidate_range_start")
	t.Log(r.Text)
}

// mmu_interval_read_begin waits for the running invalidation, which takes
// umem_mutex: calling it under umem_mutex is the inversion lockdep sees
// through the notifier map read_begin touches.
func TestMlx5ODPReadBeginUnderUmemMutex(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	runMlx5(t, mlx5Bugs{readBeginLocked: true}, 1)
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "WARNING: possible circular locking dependency detected", r.Headline)
	t.Log(r.Text)
}
