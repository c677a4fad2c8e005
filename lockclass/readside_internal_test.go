//go:build !krules_nolockdep

package lockclass

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/internal/task"
)

// The read sides' cached paths are reached: once a read section under no
// lock has gone the generic way and then through pushCached (which
// memoises the chain in the map), the next rcu_read_lock is an acquisition
// rcu_lock_map's quick tier takes (quickKey), the one RCUReadLock pushes
// inline.
func TestReadSidesReachTheQuickTier(t *testing.T) {
	t.Cleanup(Default().ResetWithRestore())
	for range 2 {
		RCUReadLock()
		RCUReadUnlock()
	}
	require.Nil(t, task.Lookup())
	rt := task.Current()
	defer rt.ReleaseIfEmpty()
	_, ok := quickKey(rt, rcuLockMap, rcuLockMap.cache[0].Load(), 2, 0)
	require.True(t, ok, "rcu_read_lock's quick tier")
	_, ok = quickKey(rt, rcuLockMap, rcuLockMap.cache[0].Load(), 1, 0)
	require.False(t, ok, "the chain key includes the read mode")
}
