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
	require.Equal(t, FamilyMMNotifier, NotifierMisuse.Family())
	require.Equal(t, FamilyMempool, MempoolDeadlock.Family())
	// khungtaskd's report is lockdep's kind: with lockdep it lists the held
	// locks (debug_show_all_locks).
	require.Equal(t, FamilyLockdep, HungTask.Family())
	require.Zero(t, kindCount.Family())
}

// Every kind has its name; the zero Kind and those past the last are
// "unknown", the name a report of no kind would print.
func TestKindNames(t *testing.T) {
	for k := Kind(1); k < kindCount; k++ {
		require.NotEmpty(t, k.String(), "kind %d", int(k))
		require.NotEqual(t, "unknown", k.String(), "kind %d", int(k))
	}
	require.Equal(t, "circular-dependency", CircularDependency.String())
	require.Equal(t, "unknown", Kind(0).String())
	require.Equal(t, "unknown", kindCount.String())
}
