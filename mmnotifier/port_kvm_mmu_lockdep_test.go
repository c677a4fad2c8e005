package mmnotifier_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
)

// A zap that reschedules with mmu_lock held, where it should drop the lock
// first (cond_resched_rwlock_write): scheduling while atomic, since a
// spinning rwlock holds preemption off. The first invalidation with
// enough SPTEs to yield proves it, blockable or not.
func TestKVMMMUSleepUnderMMULock(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	krulestest.CaptureLog(t)
	run := runKVM(t, kvmBugs{sleepUnderMMULock: true})
	run.close(t)
	require.NotEmpty(t, rec.Kinds())
	for _, k := range rec.Kinds() {
		require.Equal(t, krules.SleepInAtomic, k)
	}
	r := rec.Reports()[0]
	require.Contains(t, r.Headline, "BUG: sleeping function called from invalid context at mmnotifier/port_kvm_mmu_test.go:")
	require.Contains(t, r.Text, "in_atomic(): 1, irqs_disabled(): 0, non_block: 0")
	require.Contains(t, r.Text, "Preemption disabled at:\nmmnotifier_test.(*kvm).handleHVARange+") // KVM_MMU_LOCK
	t.Log(r.Text)
}

// A zap that yields whatever range->may_block says: the OOM reaper's
// range is not blockable, and KVM's start runs in its non-block section,
// so cond_resched_rwlock_write's check is the sleeping-function BUG with
// non_block: 1, once for each yield of the reap (64 SPTEs, a yield every
// 8); the blockable invalidations before it yield legitimately.
func TestKVMMMUYieldInNonblockableRange(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	krulestest.CaptureLog(t)
	run := runKVM(t, kvmBugs{yieldNonblock: true})
	reap := run.close(t)
	require.True(t, reap.Reaped)
	require.Len(t, rec.Kinds(), kvmPages/kvmYieldEvery)
	for _, r := range rec.Reports() {
		require.Equal(t, krules.SleepInAtomic, r.Kind)
		require.Contains(t, r.Headline, "BUG: sleeping function called from invalid context at mmnotifier/port_kvm_mmu_test.go:")
		// cond_resched_rwlock_write's check allows the lock it holds,
		// not the non-block section.
		require.Contains(t, r.Text, "in_atomic(): 1, irqs_disabled(): 0, non_block: 1, pid: ")
		require.Contains(t, r.Text, "preempt_count: 1, expected: 1\n")
	}
	t.Log(rec.Reports()[0].Text)
}
