package lockclass_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/lockclass"
)

// condReschedCases are the cond_resched_lock family, each with how to hold
// its lock, how another goroutine contends for it, and how to let it go.
func condReschedCases() map[string]struct {
	hold, contend, release func()
	condResched            func() bool
} {
	var s lockclass.SpinLock
	var w, r lockclass.RWLock
	r.Init(lockclass.QueuedReaders())
	return map[string]struct {
		hold, contend, release func()
		condResched            func() bool
	}{
		"cond_resched_lock":          {s.Lock, func() { s.Lock(); s.Unlock() }, s.Unlock, s.CondResched},
		"cond_resched_rwlock_write":  {w.Lock, func() { w.RLock(); w.RUnlock() }, w.Unlock, w.CondReschedWrite},
		"cond_resched_rwlock_read":   {r.RLock, func() { r.Lock(); r.Unlock() }, r.RUnlock, r.CondReschedRead},
		"cond_resched_rwlock_write2": {w.Lock, func() { w.Lock(); w.Unlock() }, w.Unlock, w.CondReschedWrite},
	}
}

// With nobody spinning on the lock there is nothing to break for (Go has
// no need_resched), so the lock is kept and the call says so; once a
// goroutine spins on it, the lock is dropped and taken again, the call
// says true, and the waiter gets its turn.
func TestCondReschedBreaksOnlyForAWaiter(t *testing.T) {
	for name, c := range condReschedCases() {
		t.Run(name, func(t *testing.T) {
			c.hold()
			for range 10 {
				require.False(t, c.condResched(), "uncontended: kept")
			}
			var done atomic.Bool
			go func() {
				c.contend()
				done.Store(true)
			}()
			// On this goroutine, which holds the lock (Eventually would
			// poll from another).
			broke := false
			for deadline := time.Now().Add(10 * time.Second); !done.Load(); {
				require.True(t, time.Now().Before(deadline), "the waiter never got the lock")
				broke = c.condResched() || broke
			}
			require.True(t, broke)
			c.release()
		})
	}
}
