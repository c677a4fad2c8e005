//go:build !krules_nolockdep

package dmafence_test

import (
	"testing"

	"github.com/krules/krules/krulestest"
)

// A restore worker that keeps notifier_lock while it collects the pages
// again ("BO reservations and getting user pages (hmm_range_fault) must
// happen outside the notifier lock"): it waits for mmap_lock holding the
// lock an mprotect's invalidation, holding mmap_lock, waits for. The first
// restore closes the cycle through the invalidations before it.
func TestKFDPagesUnderNotifierLock(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	runKFD(t, kfdBugs{pagesUnderNotifierLock: true})
	requireOneCircular(t, rec, "kworker/u4:2",
		"&mm->mmap_lock --> mmu_notifier_invalidate_range_start --> &process_info->notifier_lock")
}
