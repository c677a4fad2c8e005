//go:build !krules_nolockdep

package lockclass_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// spinning is one of the spinning lock types, for the tests they share.
type spinning interface {
	lockclass.Lockable
	Lock()
	TryLock() bool
	Unlock()
}

// spinningLocks returns a fresh lock of each spinning type in v, each of
// a class of its own (a registered key each).
func spinningLocks(v *lockclass.Validator) map[string]spinning {
	s, r, w := new(lockclass.SpinLock), new(lockclass.RawSpinLock), new(lockclass.RWLock)
	s.Init(lockclass.WithValidator(v), lockclass.WithKey(registeredKey()), lockclass.WithName("&dev->lock"))
	r.Init(lockclass.WithValidator(v), lockclass.WithKey(registeredKey()), lockclass.WithName("&rq->__lock"))
	w.Init(lockclass.WithValidator(v), lockclass.WithKey(registeredKey()), lockclass.WithName("&dev->rwlock"))
	return map[string]spinning{"SpinLock": s, "RawSpinLock": r, "RWLock": w}
}

// A failed trylock leaves no atomic section behind (spin_trylock's
// preempt_enable when do_raw_spin_trylock fails), and spin_is_locked says
// whether the lock is held.
func TestSpinningTrylockFailureLeavesNoAtomicSection(t *testing.T) {
	krulestest.Check(t)
	for name, l := range spinningLocks(lockclass.NewValidator()) {
		locked := func() bool { return false }
		if il, ok := l.(interface{ IsLocked() bool }); ok {
			locked = il.IsLocked
		}
		require.False(t, locked(), name)
		l.Lock()
		if name != "RWLock" {
			require.True(t, locked(), name)
		}
		require.False(t, l.TryLock(), name)
		if rw, ok := l.(*lockclass.RWLock); ok {
			require.False(t, rw.TryRLock(), "read_trylock on a write-held rwlock")
		}
		l.Unlock()
		require.False(t, locked(), name)
		require.False(t, nonblock.InAtomic(), "%s: a failed trylock left an atomic section", name)
		require.Nil(t, task.Lookup(), name)
	}
}

// A lock taken while validation was off is released as a plain lock, as
// Mutex's is: the release is not a bad unlock balance.
func TestSpinningLocksTakenWhileValidationOffUnlockQuietly(t *testing.T) {
	krulestest.Check(t)
	for name, l := range spinningLocks(lockclass.NewValidator()) {
		prev := lockclass.SetEnabled(false)
		l.Lock()
		lockclass.SetEnabled(prev)
		l.Unlock()
		require.False(t, nonblock.InAtomic(), name)
		require.Nil(t, task.Lookup(), name)
	}
}

// A successful trylock is held but adds no dependency (validate_chain
// skips trylocks: "trylock can be done in any order"), and read_trylock
// holds the rwlock for read: taking the two locks the other way round later
// is no inversion.
func TestSpinningTrylocksAddNoDependency(t *testing.T) {
	cases := map[string]func(spinning) (unlock func(), ok bool){
		"SpinLock":    func(l spinning) (func(), bool) { return l.Unlock, l.TryLock() },
		"RawSpinLock": func(l spinning) (func(), bool) { return l.Unlock, l.TryLock() },
		"RWLock":      func(l spinning) (func(), bool) { return l.Unlock, l.TryLock() },
		"RWLock/read": func(l spinning) (func(), bool) {
			rw := l.(*lockclass.RWLock)
			return rw.RUnlock, rw.TryRLock()
		},
	}
	for name, try := range cases {
		t.Run(name, func(t *testing.T) {
			rec := krulestest.Record(t)
			v := lockclass.NewValidator()
			kind, _, _ := strings.Cut(name, "/")
			a, b := spinningLocks(v)[kind], spinningLocks(v)[kind]
			a.Lock()
			unlock, ok := try(b)
			require.True(t, ok)
			if name == "RWLock/read" {
				lockclass.AssertHeldRead(b)
			}
			unlock()
			a.Unlock()
			b.Lock()
			a.Lock() // b -> a only: a -> b was never recorded
			a.Unlock()
			b.Unlock()
			require.Empty(t, rec.Kinds())
			require.Nil(t, task.Lookup())
		})
	}
}

// spin_lock_nested with another subclass, and spin_lock_nest_lock under
// the lock that serialises the class, take a second lock of a held class
// without a report; a plain spin_lock of it is recursive locking.
func TestSpinLocksNestedAndUnderANestLock(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	var s [2]lockclass.SpinLock
	var r [2]lockclass.RawSpinLock
	for i := range 2 { // one Init site each: one class each
		s[i].Init(lockclass.WithValidator(v), lockclass.WithName("&rq->lock"))
		r[i].Init(lockclass.WithValidator(v), lockclass.WithName("&rq->__lock"))
	}
	nest := mutex(v, "&tg->mutex")
	for name, pair := range map[string][2]interface {
		Lock()
		LockNested(int)
		LockNestLock(lockclass.Lockable)
		Unlock()
	}{"SpinLock": {&s[0], &s[1]}, "RawSpinLock": {&r[0], &r[1]}} {
		pair[0].Lock()
		pair[1].LockNested(1)
		pair[1].Unlock()
		pair[0].Unlock()
		require.Empty(t, rec.Kinds(), name+": another subclass")

		nest.Lock()
		pair[0].LockNestLock(nest)
		pair[1].LockNestLock(nest)
		pair[1].Unlock()
		pair[0].Unlock()
		nest.Unlock()
		require.Empty(t, rec.Kinds(), name+": under the nest lock")
	}
	s[0].Lock()
	s[1].Lock()
	s[1].Unlock()
	s[0].Unlock()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.Nil(t, task.Lookup())
}

// rwlock_t's read side taken while validation was off is released quietly
// too: read_lock's untracked acquisition is counted for read_unlock.
func TestRWLockReadTakenWhileValidationOffUnlocksQuietly(t *testing.T) {
	krulestest.Check(t)
	var l lockclass.RWLock
	l.Init(lockclass.WithValidator(lockclass.NewValidator()), lockclass.WithName("&dev->rwlock"))
	prev := lockclass.SetEnabled(false)
	l.RLock()
	lockclass.SetEnabled(prev)
	l.RUnlock()
	require.False(t, nonblock.InAtomic())
	require.Nil(t, task.Lookup())
	lockclass.SetEnabled(false)
	require.True(t, l.TryRLock()) // read_trylock: counted likewise
	lockclass.SetEnabled(prev)
	l.RUnlock()
	require.False(t, nonblock.InAtomic())
	require.Nil(t, task.Lookup())
}

// Unlocking a spinning lock that is not locked is a bad unlock balance and
// leaves the caller's atomic sections as they were: a later lock and
// unlock pair still enters and leaves one.
func TestSpinningUnlockOfAFreeLockLeavesNoSectionBehind(t *testing.T) {
	for _, name := range []string{"SpinLock", "RawSpinLock", "RWLock"} {
		t.Run(name, func(t *testing.T) {
			rec := krulestest.Record(t)
			l := spinningLocks(lockclass.NewValidator())[name]
			l.Unlock()
			require.Equal(t, []krules.Kind{krules.BadUnlockBalance}, rec.Kinds())
			require.False(t, nonblock.InAtomic())
			nonblock.StartAtomic()
			l.Unlock()
			require.True(t, nonblock.InAtomic(), "the caller's own section is untouched")
			nonblock.EndAtomic()
			l.Lock()
			require.True(t, nonblock.InAtomic())
			require.True(t, lockclass.IsHeld(l))
			l.Unlock()
			require.False(t, nonblock.InAtomic())
			require.Nil(t, task.Lookup())
		})
	}
}

// rwlockPair returns two fresh rwlocks of their own classes, queued or not,
// validated by a validator of their own.
func rwlockPair(queued bool) (a, b *lockclass.RWLock) {
	v := lockclass.NewValidator()
	a, b = new(lockclass.RWLock), new(lockclass.RWLock)
	opts := []lockclass.Option{lockclass.WithValidator(v)}
	if queued {
		opts = append(opts, lockclass.QueuedReaders())
	}
	a.Init(append(opts, lockclass.WithName("&a->lock"))...)
	b.Init(append(opts, lockclass.WithName("&b->lock"))...)
	return a, b
}

// A queued rwlock's read_lock in process context is a non-recursive read
// (rwlock_acquire_read with read_lock_is_recursive false): taking it twice
// is recursive locking, and read_lock(A); write_lock(B) against
// write_lock(B); read_lock(A) is a cycle, because a writer waiting for A
// between them keeps the second reader out. RWLock's default readers are
// the selftests' recursive ones, for which neither is a deadlock.
func TestQueuedReadersAreNotRecursive(t *testing.T) {
	rec := krulestest.Record(t)
	for _, queued := range []bool{false, true} {
		rec.Clear()
		a, _ := rwlockPair(queued)
		a.RLock()
		a.RLock()
		a.RUnlock()
		a.RUnlock()
		if queued {
			require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
			require.Contains(t, rec.Last().Text, "&a->lock")
		} else {
			require.Empty(t, rec.Kinds(), "recursive readers")
		}

		rec.Clear()
		a, b := rwlockPair(queued)
		a.RLock()
		b.Lock()
		b.Unlock()
		a.RUnlock()
		b.Lock()
		a.RLock()
		a.RUnlock()
		b.Unlock()
		if queued {
			require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
		} else {
			require.Empty(t, rec.Kinds(), "a recursive reader is not kept out by a waiting writer")
		}
	}
}

// A queued rwlock keeps new readers out while a writer waits for the lock
// (queued_read_trylock fails on _QW_WAITING), so writers are not starved;
// the default RWLock lets readers in until a writer holds it.
func TestQueuedReadersWaitBehindAWaitingWriter(t *testing.T) {
	for _, queued := range []bool{false, true} {
		l, _ := rwlockPair(queued)
		l.RLock()
		locked := make(chan struct{})
		go func() {
			l.Lock()
			close(locked)
			l.Unlock()
		}()
		// The writer spins behind the read hold; a queued reader sees it
		// waiting once it has started.
		if queued {
			require.Eventually(t, func() bool {
				if l.TryRLock() {
					l.RUnlock()
					return false
				}
				return true
			}, 10*time.Second, time.Millisecond, "a waiting writer keeps queued readers out")
		} else {
			for range 100 {
				require.True(t, l.TryRLock(), "recursive readers pass a waiting writer")
				l.RUnlock()
			}
		}
		select {
		case <-locked:
			t.Fatal("the writer took the lock from a reader")
		default:
		}
		l.RUnlock()
		<-locked
	}
}
