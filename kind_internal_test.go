package krules

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A new kind must say which family it belongs to, or the bench counts it
// under "other".
func TestEveryKindHasAFamily(t *testing.T) {
	for k := Kind(1); k < kindCount; k++ {
		require.NotZero(t, k.Family(), k.String())
	}
	require.Equal(t, FamilyLockdep, CircularDependency.Family())
	require.Equal(t, FamilySleep, SleepInAtomic.Family())
	// khungtaskd's report is lockdep's kind: with lockdep it lists the held
	// locks (debug_show_all_locks).
	require.Equal(t, FamilyLockdep, HungTask.Family())
	require.Zero(t, kindCount.Family())
}
