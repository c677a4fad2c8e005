package krules

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/internal/task"
)

// A report's held-lock list is lockdep's: with CONFIG_LOCKDEP=n (-tags
// krules_nolockdep) lockdep_print_held_locks does not exist and
// debug_show_held_locks is an empty inline, so neither writes a line, not
// even "no locks held by".
func TestHeldLockListsNeedLockdep(t *testing.T) {
	b := NewReport(MempoolDeadlock, "WARNING: possible mempool deadlock detected", 0)
	b.HeldLocks()
	b.ShowHeldLocks()
	want := ""
	if task.ConfigLockdep {
		line := "no locks held by " + b.Who() + ".\n"
		want = line + line
	}
	require.Equal(t, want, b.Report().Text)
}
