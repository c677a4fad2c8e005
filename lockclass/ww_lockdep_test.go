//go:build !krules_nolockdep

package lockclass_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// The lockdep side of ww_mutex: nest_lock and inversions against other
// locks, and Map.AcquireShared, which dma_fence_begin_signalling uses.

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
		krulestest.ResetDefault(t)
		rec := krulestest.Record(t)
		class := lockclass.NewWWClass("ww_class")
		var o lockclass.WWMutex
		o.Init(class)
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
	t.Run("a stale context, used after Fini", func(t *testing.T) {
		krulestest.ResetDefault(t)
		rec := krulestest.Record(t)
		class := lockclass.NewWWClass("ww_class")
		var o lockclass.WWMutex
		o.Init(class)
		var ctx lockclass.WWAcquireCtx
		ctx.Init(class)
		ctx.Fini()
		require.NoError(t, o.Lock(&ctx))
		o.Unlock()
		require.Equal(t, []krules.Kind{krules.NestedLockNotTaken}, rec.Kinds())
		require.Contains(t, rec.Last().Text, "ww_class_acquire")
	})
	t.Run("a context used on another goroutine", func(t *testing.T) {
		krulestest.ResetDefault(t)
		rec := krulestest.Record(t)
		class := lockclass.NewWWClass("ww_class")
		var o lockclass.WWMutex
		o.Init(class)
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
	t.Run("shared section vs exclusive waiter", func(t *testing.T) {
		krulestest.ResetDefault(t)
		rec := krulestest.Record(t)
		fence := lockclass.NewMap("dma_fence_map")
		var l lockclass.Mutex
		l.Init(lockclass.WithName("L"))
		l.Lock()
		fence.Acquire() // wait while holding L: L -> fence
		fence.Release()
		l.Unlock()
		fence.AcquireShared() // signalling section takes L: fence -> L
		l.Lock()
		l.Unlock()
		fence.Release()
		require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	})
	t.Run("recursive read proves nothing there", func(t *testing.T) {
		krulestest.ResetDefault(t)
		rec := krulestest.Record(t)
		fence := lockclass.NewMap("dma_fence_map")
		var l lockclass.Mutex
		l.Init(lockclass.WithName("L"))
		l.Lock()
		fence.AcquireRead()
		fence.Release()
		l.Unlock()
		fence.AcquireShared()
		l.Lock()
		l.Unlock()
		fence.Release()
		require.Zero(t, rec.Len())
	})
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
