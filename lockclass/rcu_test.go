//go:build !krules_nolockdep

package lockclass_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

func TestRCUReadSectionIsAtomicAndNests(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	require.False(t, lockclass.RCUReadLockHeld())
	lockclass.RCUReadLock()
	lockclass.RCUReadLock()
	require.True(t, lockclass.RCUReadLockHeld())
	require.True(t, nonblock.InAtomic())
	lockclass.AssertInRCUReadLock()
	lockclass.RCUReadUnlock()
	require.True(t, lockclass.RCUReadLockHeld())
	lockclass.RCUReadUnlock()
	require.False(t, lockclass.RCUReadLockHeld())
	require.False(t, nonblock.InAtomic())
	require.Empty(t, rec.Kinds())
	lockclass.AssertInRCUReadLock()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "lockdep_assert_in_rcu_read_lock()")
}

// A spinlock_t nests inside a read section; a mutex gets might_sleep's BUG
// (preempt_count 1, rcu_read_lock is preempt_disable) and then lockdep's
// invalid wait context (rcu_lock_map's inner type is LD_WAIT_CONFIG).
func TestRCUReadSectionForbidsSleeping(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var s lockclass.SpinLock
	s.Init(lockclass.WithName("&dev->lock"))
	var m lockclass.Mutex
	m.Init(lockclass.WithName("&dev->mutex"))
	lockclass.RCUReadLock()
	s.Lock()
	s.Unlock()
	require.Empty(t, rec.Kinds())
	m.Lock()
	m.Unlock()
	lockclass.RCUReadUnlock()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.InvalidWaitContext}, rec.Kinds())
	sleep := rec.Reports()[0].Text
	require.Contains(t, sleep, "\npreempt_count: 1, expected: 0\n")
	require.Regexp(t, `\n #0: [0-9a-f]{16} \(rcu_read_lock\)\{\.\+\.\+\}-\{1:\d\}, at: `, sleep)
}

func TestRCUUnbalancedUnlock(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	lockclass.RCUReadUnlock()
	require.Equal(t, []krules.Kind{krules.BadUnlockBalance}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "is trying to release lock (rcu_read_lock) at:")
	require.False(t, nonblock.InAtomic())
	// The library keeps working.
	lockclass.RCUReadLock()
	lockclass.RCUReadUnlock()
	require.False(t, nonblock.InAtomic())
}

func TestSynchronizeRCUInsideReadSection(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	lockclass.RCUReadLock()
	lockclass.SynchronizeRCU()
	lockclass.RCUReadUnlock()
	require.Equal(t, []krules.Kind{krules.SuspiciousRCU}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "WARNING: suspicious RCU usage", r.Headline)
	lines := strings.Split(r.Text, "\n")
	require.Equal(t, "=============================", lines[0])
	require.Regexp(t, `^lockclass/rcu_test\.go:\d+ Illegal synchronize_rcu\(\) in RCU read-side critical section!$`, lines[4])
	require.Contains(t, r.Text, "\nrcu_scheduler_active = 2, debug_locks = 1\n1 lock held by ")
	require.Contains(t, r.Text, "(rcu_read_lock)")
}

// synchronize_rcu waits for the readers that began before it; call_rcu's callback runs after a grace period in
// an atomic section.
func TestSynchronizeRCUWaitsForReaders(t *testing.T) {
	krulestest.Check(t)
	var ptr atomic.Pointer[int]
	v := 1
	ptr.Store(&v)
	inside, leave := make(chan struct{}), make(chan struct{})
	var freed atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		lockclass.RCUReadLock()
		p := ptr.Load()
		close(inside)
		<-leave // a real reader would not block; the test holds it open
		require.False(t, freed.Load(), "grace period ended under a reader")
		_ = *p
		lockclass.RCUReadUnlock()
	}()
	<-inside
	w := 2
	ptr.Store(&w)
	done := make(chan struct{})
	go func() {
		lockclass.SynchronizeRCU()
		freed.Store(true)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("synchronize_rcu returned with a reader inside")
	case <-time.After(20 * time.Millisecond):
	}
	close(leave)
	<-done
	wg.Wait()

	ran := make(chan bool, 1)
	lockclass.CallRCU(func() { ran <- nonblock.InAtomic() })
	lockclass.RCUBarrier()
	require.True(t, <-ran, "callbacks run in an atomic section")
}

func TestSRCUReadSectionsAndGracePeriod(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	var s lockclass.SRCU
	s.Init(lockclass.WithName("&kvm->srcu"))
	idx := s.ReadLock()
	require.True(t, lockclass.IsHeld(&s))
	require.False(t, nonblock.InAtomic(), "SRCU readers may sleep")
	nonblock.MightSleep()
	done := make(chan struct{})
	go func() { s.Synchronize(); close(done) }()
	select {
	case <-done:
		t.Fatal("synchronize_srcu returned with a reader inside")
	case <-time.After(20 * time.Millisecond):
	}
	s.ReadUnlock(idx)
	<-done
	var ran atomic.Bool
	s.Call(func() { ran.Store(true) })
	s.Barrier()
	require.True(t, ran.Load())
}

// synchronize_srcu inside a read section of the same srcu_struct is a
// deadlock lockdep reports (srcu_lock_sync after srcu_lock_acquire).
func TestSynchronizeSRCUInsideOwnReadSection(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var s lockclass.SRCU
	s.Init(lockclass.WithName("&kvm->srcu"))
	var other lockclass.SRCU
	other.Init(lockclass.WithName("&other->srcu"))
	idx := s.ReadLock()
	other.Synchronize() // another srcu_struct: fine
	require.Empty(t, rec.Kinds())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Synchronize() // on another goroutine, it waits for the reader
	}()
	s.ReadUnlock(idx)
	<-done

	idx = s.ReadLock()
	rec.Clear()
	s.Synchronize() // would wait for itself: reported, and it returns
	s.ReadUnlock(idx)
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.Equal(t, "WARNING: possible recursive locking detected", rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "(&kvm->srcu)")
}
