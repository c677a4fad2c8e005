//go:build !krules_nolockdep

package mmnotifier_test

import (
	"testing"

	"github.com/krules/krules/krulestest"
)

// dmirror_do_fault stores into its XArray under dmirror->mutex with
// GFP_ATOMIC, because dmirror_interval_invalidate takes the mutex: with
// GFP_KERNEL, reclaim could wait for an invalidation that waits for the
// mutex the fault holds.
func TestDmirrorXAStoreKernelUnderMutex(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	runDmirror(t, dmirrorBugs{xaStoreKernel: true}).close()
	requireOneCircular(t, rec, "&dmirror->mutex", "fs_reclaim", "mmu_notifier_invalidate_range_start")
}

// hmm_range_fault takes mmap_lock's read side (the caller does) and may
// fault; under dmirror->mutex it inverts the order of an invalidation,
// which runs under mmap_lock and takes the mutex.
func TestDmirrorFaultUnderMutex(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	runDmirror(t, dmirrorBugs{faultUnderMutex: true}).close()
	requireOneCircular(t, rec, "&dmirror->mutex", "&mm->mmap_lock")
}
