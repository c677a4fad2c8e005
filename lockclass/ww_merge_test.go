//go:build !krules_nolockdep

package lockclass_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// The cached tier for WWMutexes nested in a context (a reference counted in
// the top entry, as __lock_acquire with nest_lock) must keep what the slow
// path does.

func wwWarm(t *testing.T, n int) (*lockclass.WWClass, []lockclass.WWMutex) {
	class := lockclass.NewWWClass("ww_merge")
	ms := make([]lockclass.WWMutex, n)
	for i := range ms {
		ms[i].Init(class)
	}
	var ctx lockclass.WWAcquireCtx
	ctx.Init(class)
	for i := range ms {
		require.NoError(t, ms[i].Lock(&ctx))
	}
	for i := range ms {
		ms[i].Unlock()
	}
	ctx.Fini()
	return class, ms
}

func TestWWNestedLockInANonBlockSectionMightSleepOnceEach(t *testing.T) {
	rec := krulestest.Record(t)
	class, ms := wwWarm(t, 3)
	require.Zero(t, rec.Len())

	var ctx lockclass.WWAcquireCtx
	nonblock.Start()
	ctx.Init(class)
	for i := range ms {
		require.NoError(t, ms[i].Lock(&ctx))
	}
	for i := range ms {
		ms[i].Unlock()
	}
	ctx.Fini()
	nonblock.End()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.SleepInAtomic, krules.SleepInAtomic}, rec.Kinds())
	require.Contains(t, rec.Reports()[0].Headline, "BUG: sleeping function called from invalid context at ")
	require.Nil(t, task.Lookup())
}

func TestWWNestedReferencesReleasedInAnyOrder(t *testing.T) {
	rec := krulestest.Record(t)
	class, ms := wwWarm(t, 4)

	var ctx lockclass.WWAcquireCtx
	ctx.Init(class)
	for i := range ms {
		require.NoError(t, ms[i].Lock(&ctx))
	}
	for _, i := range []int{0, 2, 1, 3} {
		ms[i].Unlock()
	}
	require.Zero(t, ctx.Acquired())
	ctx.Fini()
	require.Zero(t, rec.Len())
	require.Nil(t, task.Lookup(), "every reference and the context are released")

	ms[1].Unlock() // once more: nothing is held
	require.Equal(t, []krules.Kind{krules.BadUnlockBalance}, rec.Kinds())
}
