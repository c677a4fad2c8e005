//go:build !krules_nolockdep

package mmnotifier_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
)

// xe_sched_job_create allocates with GFP_KERNEL; under notifier_lock, which
// the notifier takes, reclaim could wait for the notifier waiting for the
// lock.
func TestXeUserptrJobAllocUnderNotifierLock(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	runXe(t, xeBugs{jobUnderNotifierLock: true})
	requireOneCircular(t, rec, "&vm->userptr.notifier_lock")
}

// A run_job that waits for the previous job's fence inside its signalling
// section. v6.12 prints nothing for a wait with no lock held
// (__dma_fence_might_wait drops the section's read hold first); krules
// warns, as its package doc says.
func TestXeUserptrWaitInRunJob(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	runXe(t, xeBugs{waitInRunJob: true})
	require.NotEmpty(t, rec.Kinds())
	for _, k := range rec.Kinds() {
		require.Equal(t, krules.FenceMisuse, k)
	}
	require.Contains(t, rec.Reports()[0].Text, "dma_fence_wait inside a dma_fence signalling section")
}
