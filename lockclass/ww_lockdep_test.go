//go:build !krules_nolockdep

package lockclass_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// The lockdep side of ww_mutex: nest_lock and inversions against other
// locks, and Map.AcquireShared, which dma_fence_begin_signalling uses.

// oneWWMutex resets the default validator and returns a recorder of its
// reports, a wound-wait class named ww_class and one mutex of it.
func oneWWMutex(t *testing.T) (*krulestest.Recorder, *lockclass.WWClass, *lockclass.WWMutex) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	class := lockclass.NewWWClass("ww_class")
	o := new(lockclass.WWMutex)
	o.Init(class)
	return rec, class, o
}

// Lockdep: any number of mutexes of the class in any order inside one
// context is fine; an ordering against another lock is still checked.
func TestWWLockdep(t *testing.T) {
	t.Run("any order in a context", func(t *testing.T) {
		krulestest.ResetDefault(t)
		krulestest.Check(t)
		class := lockclass.NewWWClass("ww_class")
		ms := wwMutexes(class, 8)
		for _, order := range [][]int{{0, 1, 2, 3, 4, 5, 6, 7}, {7, 6, 5, 4, 3, 2, 1, 0}, {3, 0, 7, 1, 6, 2, 5, 4}} {
			var ctx lockclass.WWAcquireCtx
			ctx.Init(class)
			for _, i := range order {
				require.NoError(t, ms[i].Lock(&ctx))
			}
			for _, i := range order {
				ms[i].Unlock()
			}
			ctx.Fini()
		}
	})
	t.Run("inversion against a mutex", func(t *testing.T) {
		rec, class, o := oneWWMutex(t)
		var m lockclass.Mutex
		m.Init(lockclass.WithName("driver_lock"))

		var ctx lockclass.WWAcquireCtx
		ctx.Init(class)
		require.NoError(t, o.Lock(&ctx))
		m.Lock() // ww_class_mutex -> driver_lock
		m.Unlock()
		o.Unlock()
		ctx.Fini()
		require.Zero(t, rec.Len())

		m.Lock()
		ctx.Init(class) // driver_lock -> ww_class_acquire: closes the cycle
		require.NoError(t, o.Lock(&ctx))
		o.Unlock()
		ctx.Fini()
		m.Unlock()
		require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
		require.Contains(t, rec.Last().Text, "ww_class_acquire")
		require.Contains(t, rec.Last().Text, "driver_lock")
	})
	t.Run("the class's keys are its contexts' and its mutexes' classes", func(t *testing.T) {
		rec, class, o := oneWWMutex(t)
		require.Equal(t, "ww_class", class.Name())
		require.Same(t, class, o.Class())
		acquire := lockclass.NewMap("ww_class_acquire", lockclass.WithKey(class.AcquireKey()))
		mutex := lockclass.NewMap("ww_class_mutex", lockclass.WithKey(class.MutexKey()))
		var ctx lockclass.WWAcquireCtx
		ctx.Init(class)
		require.Same(t, class, ctx.Class())
		require.True(t, lockclass.IsHeld(&ctx), "ww_acquire_init acquires the context's map")
		acquire.Acquire() // the context's class, held by ctx
		acquire.Release()
		ctx.Fini()
		require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
		require.Contains(t, rec.Last().Text, "(ww_class_acquire)")

		lockclass.Default().Reset()
		rec.Clear()
		ctx.Init(class)
		require.NoError(t, o.Lock(&ctx))
		mutex.Acquire() // o's class, without the context as nest lock
		mutex.Release()
		o.Unlock()
		ctx.Fini()
		require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
		require.Contains(t, rec.Last().Text, "(ww_class_mutex)")
	})
	t.Run("a stale context, used after Fini", func(t *testing.T) {
		rec, class, o := oneWWMutex(t)
		var ctx lockclass.WWAcquireCtx
		ctx.Init(class)
		ctx.Fini()
		require.NoError(t, o.Lock(&ctx))
		o.Unlock()
		require.Equal(t, []krules.Kind{krules.NestedLockNotTaken}, rec.Kinds())
		require.Contains(t, rec.Last().Text, "ww_class_acquire")
	})
	t.Run("a context used on another goroutine", func(t *testing.T) {
		rec, class, o := oneWWMutex(t)
		var ctx lockclass.WWAcquireCtx
		ctx.Init(class)
		done := make(chan struct{})
		go func() {
			defer close(done)
			require.NoError(t, o.Lock(&ctx))
			o.Unlock()
		}()
		<-done
		ctx.Fini()
		require.Equal(t, []krules.Kind{krules.NestedLockNotTaken}, rec.Kinds())
	})
}

// Map.AcquireShared is read = 1: a full participant, unlike AcquireRead.
func TestMapAcquireShared(t *testing.T) {
	// A wait on the map while holding L (L -> fence), then L taken in a
	// shared section (fence -> L): a cycle when the wait is a full
	// acquisition, nothing when it is a recursive read.
	for _, tc := range []struct {
		name string
		wait func(*lockclass.Map)
		want []krules.Kind
	}{
		{"shared section vs exclusive waiter", (*lockclass.Map).Acquire, []krules.Kind{krules.CircularDependency}},
		{"recursive read proves nothing there", (*lockclass.Map).AcquireRead, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			krulestest.ResetDefault(t)
			rec := krulestest.Record(t)
			fence := lockclass.NewMap("dma_fence_map")
			var l lockclass.Mutex
			l.Init(lockclass.WithName("L"))
			l.Lock()
			tc.wait(fence) // L -> fence
			fence.Release()
			l.Unlock()
			fence.AcquireShared() // signalling section takes L: fence -> L
			l.Lock()
			l.Unlock()
			fence.Release()
			require.Equal(t, tc.want, rec.Kinds())
		})
	}
	t.Run("exclusive inside shared", func(t *testing.T) {
		krulestest.ResetDefault(t)
		rec := krulestest.Record(t)
		fence := lockclass.NewMap("dma_fence_map")
		fence.AcquireShared()
		fence.Acquire()
		fence.Release()
		fence.Release()
		require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	})
	t.Run("shared nests across goroutines", func(t *testing.T) {
		krulestest.ResetDefault(t)
		krulestest.Check(t)
		fence := lockclass.NewMap("dma_fence_map")
		fence.AcquireShared()
		require.True(t, lockclass.IsHeld(fence))
		fence.Release()
		done := make(chan struct{})
		go func() { defer close(done); fence.TryAcquireShared(); fence.Release() }()
		<-done
	})
}

// A lock released out of order inside a ww context: the entries above it
// are taken again (reacquire_held_locks), and a ww_mutex among them merges
// into the entry of its class below (nest_lock) rather than being pushed a
// second time, so every unlock after it balances.
func TestOutOfOrderReleaseRemergesWWEntries(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	class := lockclass.NewWWClass("remerge_class")
	var a, b lockclass.WWMutex
	a.Init(class)
	b.Init(class)
	var x lockclass.Mutex
	x.Init(lockclass.WithName("x_lock"))
	var ctx lockclass.WWAcquireCtx
	ctx.Init(class)
	require.NoError(t, a.Lock(&ctx))
	x.Lock()
	require.NoError(t, b.Lock(&ctx))
	x.Unlock() // not on top: b is taken again and merges into a's entry
	var out strings.Builder
	require.NoError(t, krules.ShowAllLocks(&out))
	require.Contains(t, out.String(), "2 locks held by ", out.String())
	b.Unlock()
	a.Unlock()
	ctx.Fini()
	require.Empty(t, rec.Kinds())
	require.Nil(t, task.Lookup())
}

// Every ww_mutex locked in a context is a nest_lock acquisition under it
// (mutex_acquire_nest), so the locks of the class merge into one held
// entry whose reference count, 11 bits wide, overflows at the 2048th:
// DEBUG_LOCKS_WARN_ON(hlock->references < references), and lockdep is
// off. The cached tiers count, and give back, the references as the slow
// path does.
func TestWWReferencesOverflowAt2048(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	class := lockclass.NewWWClass("ww_many")
	ms := wwMutexes(class, 2048)
	lockAll := func(n int) (refs uint32) {
		var ctx lockclass.WWAcquireCtx
		ctx.Init(class)
		for _, m := range ms[:n] {
			require.NoError(t, m.Lock(&ctx))
		}
		if held := task.Lookup().Lockdep.Held; len(held) == 2 {
			refs = held[1].References
		}
		for _, m := range ms[:n] {
			m.Unlock()
		}
		ctx.Fini()
		return refs
	}
	for range 2 { // the second round through the cached tiers
		require.EqualValues(t, 2047, lockAll(2047))
		require.Nil(t, task.Lookup(), "every reference given back")
	}
	require.Zero(t, rec.Len())
	lockAll(2048)
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "DEBUG_LOCKS_WARN_ON(hlock->references < references)")
	require.False(t, lockclass.Default().Enabled())
	require.Nil(t, task.Lookup())
}
