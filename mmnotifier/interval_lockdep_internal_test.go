//go:build !krules_nolockdep

package mmnotifier

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
)

// mmu_interval_notifier_insert_locked asserts mmap_lock held for writing
// (mmap_assert_write_locked): with it held for reading only, lockdep's
// assertion warns (lockdep_assert_held_write is a WARN_ON, not once), and
// so does __mmu_notifier_register's when the first interval registers the
// tree; the insertion goes ahead.
func TestInsertIntervalLockedUnderTheReadLockWarns(t *testing.T) {
	rec := krulestest.Record(t)
	mm := testMM(t)
	mm.mmapLock.RLock()
	A, err := InsertIntervalLocked(mm, 0x20000, page, &seqOps{})
	mm.mmapLock.RUnlock()
	require.NoError(t, err)
	require.True(t, inTree(A))
	require.Equal(t, []krules.Kind{krules.LockdepMisuse, krules.LockdepMisuse}, rec.Kinds())
	for _, r := range rec.Reports() {
		require.Contains(t, r.Text, "lockdep_assert_held_write(&mm->mmap_lock)")
	}
	A.Remove()
}
