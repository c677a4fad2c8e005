//go:build !krules_nolockdep

package lockclass

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/internal/task"
)

// The read sides' cached paths are reached: once a read section and a
// seqcount read under no lock have gone the generic way and then through
// pushCached (which memoises the chain in the map), the next rcu_read_lock
// is one its unchecked quick tier takes (uncheckedQuick: check = 0 needs no
// cached chain) and the next seqcount read one its map's quick tier takes
// (quickKey), which readBegin skips.
func TestReadSidesReachTheQuickTier(t *testing.T) {
	t.Cleanup(Default().ResetWithRestore())
	var sc SeqCount
	sc.Init(nil, WithName("&s->seq"))
	for range 2 {
		RCUReadLock()
		RCUReadUnlock()
		sc.ReadBegin()
	}
	require.Nil(t, task.Lookup())
	rt := task.Current()
	defer rt.ReleaseIfEmpty()
	require.True(t, uncheckedQuick(rt, rcuLockMap.cache[0].Load()), "rcu_read_lock's quick tier")
	_, ok := quickKey(rt, &sc.dep, sc.dep.cache[0].Load(), 2, 0)
	require.True(t, ok, "the seqcount reader's quick tier")
}
