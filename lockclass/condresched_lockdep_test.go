//go:build !krules_nolockdep

package lockclass_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// cond_resched_lock's __might_resched allows exactly the one lock's
// preemption count (PREEMPT_LOCK_OFFSET): with only that lock held nothing
// is reported; with a second spinning lock held, or inside a non-block
// section, it is the sleeping-function BUG naming the caller; without the
// lock held, lockdep_assert_held warns as well.
func TestCondReschedChecksTheContextAndTheHold(t *testing.T) {
	rec := krulestest.Record(t)
	var outer, l lockclass.SpinLock
	outer.Init(lockclass.WithName("&outer"))
	l.Init(lockclass.WithName("&kvm->mmu_lock"))

	l.Lock()
	require.False(t, l.CondResched())
	l.Unlock()
	require.Empty(t, rec.Kinds(), "one lock held: the offset it allows")

	outer.Lock()
	l.Lock()
	l.CondResched()
	l.Unlock()
	outer.Unlock()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	require.Regexp(t, `^BUG: sleeping function called from invalid context at lockclass/condresched_lockdep_test\.go:\d+$`, rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "preempt_count: 2, expected: 1\n")

	rec.Clear()
	nonblock.Start()
	l.Lock()
	l.CondResched()
	l.Unlock()
	nonblock.End()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "non_block: 1,")

	rec.Clear()
	require.False(t, l.CondResched())
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Reports()[0].Text, "preempt_count: 0, expected: 1\n")
	require.Contains(t, rec.Last().Text, "lockdep_assert_held(&kvm->mmu_lock)")

	var rw lockclass.RWLock
	rw.Init(lockclass.WithName("&rw"))
	rec.Clear()
	rw.RLock()
	rw.CondReschedWrite()
	rw.RUnlock()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "lockdep_assert_held_write(&rw)")
	rec.Clear()
	rw.Lock()
	rw.CondReschedRead()
	rw.Unlock()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "lockdep_assert_held_read(&rw)")
}
