//go:build !krules_nolockdep

package mmnotifier_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
)

// A list notifier that takes svmm->mutex in a non-blockable range runs
// inside the OOM reaper's non-block section: mutex_lock's might_sleep.
func TestNouveauSVMSleepsInNonblockableInvalidate(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	run := runNouveau(t, nouveauBugs{invalidateNonblock: true})
	require.True(t, run.reap.Reaped)
	// The kernel prints the first only (__might_resched's prev_jiffy);
	// claimed reports are not rate limited, so the nested vmm->mutex.vmm
	// shows up too.
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.SleepInAtomic}, rec.Kinds())
	r := rec.Reports()[0]
	require.Contains(t, r.Headline, "BUG: sleeping function called from invalid context at mmnotifier/port_nouveau_svm_test.go:")
	require.Contains(t, r.Text, "non_block: 1")
	t.Log(r.Text)
}

// mmu_interval_notifier_remove waits for the running invalidation, whose
// callback takes svmm->mutex: removing under the mutex is an inversion.
func TestNouveauSVMRemoveUnderMutex(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	runNouveau(t, nouveauBugs{removeUnderMutex: true})
	requireOneCircular(t, rec)
}

// GFP_KERNEL under svmm->mutex, which the notifier takes.
func TestNouveauSVMAllocUnderMutex(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	runNouveau(t, nouveauBugs{allocUnderMutex: true})
	requireOneCircular(t, rec)
}
