//go:build !krules_nolockdep

package lockclass_test

import (
	"io"
	"regexp"
	"runtime"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
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
	// Taken with check = 0, rcu_lock_map marks no usage: {....}, as the
	// kernel prints it.
	require.Regexp(t, `\n #0: [0-9a-f]{16} \(rcu_read_lock\)\{\.\.\.\.\}-\{1:\d\}, at: `, sleep)
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
	// RCU_LOCKDEP_WARN, then might_sleep's BUG (synchronize_rcu sleeps in
	// rcu_blocking_is_gp); lockdep_rcu_suspicious leaves validation on.
	require.Equal(t, []krules.Kind{krules.SuspiciousRCU, krules.SleepInAtomic}, rec.Kinds())
	require.True(t, lockclass.Default().Enabled())
	r := rec.Reports()[0]
	require.Equal(t, "WARNING: suspicious RCU usage", r.Headline)
	lines := strings.Split(r.Text, "\n")
	require.Equal(t, "=============================", lines[0])
	require.Regexp(t, `^lockclass/rcu_test\.go:\d+ Illegal synchronize_rcu\(\) in RCU read-side critical section!$`, lines[4])
	require.Contains(t, r.Text, "\nrcu_scheduler_active = 2, debug_locks = 1\n1 lock held by ")
	require.Contains(t, r.Text, "(rcu_read_lock)")
}

// RCU_LOCKDEP_WARN warns once (its static __warned): a second
// synchronize_rcu() in a read section is might_sleep's BUG alone.
func TestSuspiciousSynchronizeRCUWarnsOnce(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	lockclass.RCUReadLock()
	lockclass.SynchronizeRCU()
	lockclass.SynchronizeRCU()
	lockclass.RCUReadUnlock()
	require.Equal(t, []krules.Kind{krules.SuspiciousRCU, krules.SleepInAtomic, krules.SleepInAtomic}, rec.Kinds())
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

// rcu_read_lock's cached path (the atomic section and rcu_lock_map's quick
// tier on one record) pushes what the generic way pushes: rcu_lock_map for
// recursive read (read = 2), unchecked, at the caller's site, under the same
// chain key; and its atomic section is nonblock's, with the caller as where
// preemption was disabled. The first section goes the generic way, the
// second through pushCached, the third through the quick tier.
func TestCachedRCUReadLockPushesTheGenericEntry(t *testing.T) {
	bothIDWays(t, func(t *testing.T) {
		krulestest.ResetDefault(t)
		rec := krulestest.Record(t)
		var keys []uint64
		for range 3 {
			_, _, line, _ := runtime.Caller(0)
			lockclass.RCUReadLock()
			rt := task.Lookup()
			require.Len(t, rt.Lockdep.Held, 1)
			h := rt.Lockdep.Held[0]
			require.Equal(t, uint8(2), h.Read, "a recursive read")
			require.False(t, h.Check, "check = 0, as rcu_lock_acquire")
			require.False(t, h.Trylock)
			require.Contains(t, task.LabelOf(&h), "(rcu_read_lock)")
			require.Contains(t, stack.FormatPC(h.Site), "lockclass/rcu_test.go:"+strconv.Itoa(line+1))
			require.Contains(t, stack.FormatPC(h.Site), "TestCachedRCUReadLockPushesTheGenericEntry")
			require.Equal(t, h.Site, rt.PreemptSite, "preemption disabled where the section began")
			require.Equal(t, int32(1), rt.Preempt)
			require.Equal(t, int32(1), rt.RCUNest)
			keys = append(keys, rt.Lockdep.ChainKey)
			lockclass.RCUReadUnlock()
			require.Nil(t, task.Lookup(), "the section left nothing in the record")
		}
		require.Equal(t, []uint64{keys[0], keys[0], keys[0]}, keys)

		// Nested, the inner section pushes a second recursive read; might_sleep
		// inside names the outer section's site.
		_, _, line, _ := runtime.Caller(0)
		lockclass.RCUReadLock()
		lockclass.RCUReadLock()
		held := task.Lookup().Lockdep.Held
		require.Len(t, held, 2)
		require.Equal(t, uint8(2), held[1].Read)
		require.Contains(t, stack.FormatPC(held[1].Site), "lockclass/rcu_test.go:"+strconv.Itoa(line+2))
		nonblock.MightSleep()
		lockclass.RCUReadUnlock()
		require.True(t, nonblock.InAtomic())
		lockclass.RCUReadUnlock()
		require.Nil(t, task.Lookup())
		require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
		require.Regexp(t, `\npreempt_count: 2, expected: 0\n`, rec.Last().Text)
		require.Regexp(t, `\nPreemption disabled at:\nlockclass_test\.TestCachedRCUReadLockPushesTheGenericEntry\.func1\+0x[0-9a-f]+ lockclass/rcu_test\.go:`+strconv.Itoa(line+1)+`\n`, rec.Last().Text)
	})
}

// A read section that the cached path cannot enter goes nonblock's way:
// with the execution tracer on, the section opens its region and
// rcu_read_unlock ends it.
func TestRCUReadSectionWhileTracing(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	lockclass.RCUReadLock() // cached before tracing begins
	lockclass.RCUReadUnlock()
	require.NoError(t, trace.Start(io.Discard))
	defer trace.Stop()
	lockclass.RCUReadLock()
	rt := task.Lookup()
	require.Len(t, rt.Regions, 1)
	require.True(t, rt.Regions[0].Atomic)
	require.Len(t, rt.Lockdep.Held, 1)
	lockclass.RCUReadUnlock()
	require.Nil(t, task.Lookup(), "the region ended and the record dropped")
}

// An atomic section ended inside a read section makes rcu_read_unlock's
// preempt_enable an underflow, which nonblock reports; the read section is
// left all the same and the record it emptied is dropped.
func TestRCUReadUnlockAfterItsSectionWasEnded(t *testing.T) {
	bothIDWays(t, func(t *testing.T) {
		krulestest.ResetDefault(t)
		rec := krulestest.Record(t)
		for range 3 {
			lockclass.RCUReadLock()
			nonblock.EndAtomic()
			lockclass.RCUReadUnlock()
			require.False(t, lockclass.RCUReadLockHeld())
			require.Nil(t, task.Lookup())
		}
		require.Equal(t, []krules.Kind{krules.NonBlockImbalance, krules.NonBlockImbalance, krules.NonBlockImbalance}, rec.Kinds())
		require.Regexp(t, regexp.QuoteMeta("preempt_count underflow"), rec.Last().Text)
	})
}

// An inversion of two spinlocks is reported whether a read section
// surrounds both (rcu_read_lock; A; B) or lies between them (A;
// rcu_read_lock; B), once the chains are cached: rcu_lock_map is taken with
// check = 0, as the kernel's rcu_lock_acquire takes it, so check_prevs_add
// passes over it and records A -> B. Recorded as A -> rcu -> B, the path
// would run through a recursive reader, never be strong, and an ABBA across
// read sections would go unreported. Each order is taken three times, so
// the generic way, the cached chain and the quick tiers all meet the read
// section; the record is dropped when everything is released.
func TestInversionAroundCachedRCUReadSectionsIsReported(t *testing.T) {
	for _, between := range []bool{false, true} {
		t.Run(map[bool]string{false: "section around both", true: "section between"}[between], func(t *testing.T) {
			bothIDWays(t, func(t *testing.T) {
				krulestest.ResetDefault(t)
				rec := krulestest.Record(t)
				var a, b lockclass.SpinLock
				a.Init(lockclass.WithName("&a->lock"))
				b.Init(lockclass.WithName("&b->lock"))
				take := func(first, second *lockclass.SpinLock) {
					if !between {
						lockclass.RCUReadLock()
					}
					first.Lock()
					if between {
						lockclass.RCUReadLock()
					}
					second.Lock()
					second.Unlock()
					if between {
						lockclass.RCUReadUnlock()
					}
					first.Unlock()
					if !between {
						lockclass.RCUReadUnlock()
					}
				}
				for range 3 {
					take(&a, &b)
				}
				require.Zero(t, rec.Len())
				take(&b, &a) // B -> A closes A -> B
				require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
				r := rec.Last().Text
				require.Contains(t, r, "\n-> #1 (&b->lock){+.+.}-{2:2}:\n", "A -> B recorded")
				require.NotContains(t, r, "-> #2", "the chain is A -> B, not through rcu_read_lock")
				require.Regexp(t, ` \(rcu_read_lock\)\{\.\.\.\.\}-\{1:2\}, at: `, r, "held, never ordered")
				require.Nil(t, task.Lookup())
				require.False(t, nonblock.InAtomic())
			})
		})
	}
}

// An rcu_read_unlock() with no read section open is lockdep's bad unlock
// balance (rcu_lock_release) and changes nothing else, also when the
// goroutine has a record of its own: the atomic section of the spin lock
// it holds stays entered, and its next read section counts from zero.
func TestRCUUnbalancedUnlockInsideASpinLock(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var s lockclass.SpinLock
	s.Init(lockclass.WithName("&dev->lock"))
	s.Lock()
	lockclass.RCUReadUnlock()
	require.Equal(t, []krules.Kind{krules.BadUnlockBalance}, rec.Kinds())
	require.True(t, nonblock.InAtomic(), "the spin lock's atomic section is left alone")
	lockclass.RCUReadLock()
	require.Equal(t, int32(1), task.Lookup().RCUNest)
	lockclass.RCUReadUnlock()
	require.True(t, nonblock.InAtomic())
	s.Unlock()
	require.False(t, nonblock.InAtomic())
	require.Nil(t, task.Lookup())
	require.Len(t, rec.Reports(), 1)
}

// rcu_read_lock_held() answers yes while lockdep cannot tell
// (!debug_lockdep_rcu_enabled()), so that the assertions built on it stay
// quiet: with validation off, RCUReadLockHeld is true outside any section.
func TestRCUReadLockHeldWhileValidationIsOff(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	require.False(t, lockclass.RCUReadLockHeld())
	defer lockclass.SetEnabled(lockclass.SetEnabled(false))
	require.True(t, lockclass.RCUReadLockHeld())
	lockclass.AssertInRCUReadLock()
}

// A read section entered while validation is switched off is a plain one:
// rcu_lock_map is not tracked (no entry on the held-lock stack), and its
// release once validation is back on finds it untracked, not a bad unlock
// balance. A lock held from before makes the record the read section finds
// at once (RCUReadLock's own way, not nonblock's).
func TestRCUReadLockWhileSwitchedOffIsUntracked(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var m lockclass.Mutex
	m.Init(lockclass.WithName("m"))
	m.Lock()
	prev := lockclass.SetEnabled(false)
	defer lockclass.SetEnabled(prev)
	lockclass.RCUReadLock()
	require.Len(t, task.Lookup().Lockdep.Held, 1, "m alone")
	lockclass.SetEnabled(prev)
	lockclass.RCUReadUnlock()
	m.Unlock()
	require.Empty(t, rec.Kinds())
	require.Nil(t, task.Lookup())
}

// synchronize_rcu() and rcu_barrier() sleep (wait_rcu_gp's completion,
// rcu_barrier's mutex), and so do synchronize_srcu() and srcu_barrier():
// called in an atomic section that is no read section, each is
// might_sleep's BUG.
func TestGracePeriodWaitsMightSleep(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var s lockclass.SRCU
	s.Init(lockclass.WithName("&kvm->srcu"))
	nonblock.StartAtomic()
	lockclass.SynchronizeRCU()
	lockclass.RCUBarrier()
	s.Synchronize()
	s.Barrier()
	nonblock.EndAtomic()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.SleepInAtomic, krules.SleepInAtomic, krules.SleepInAtomic}, rec.Kinds())
	for _, r := range rec.Reports() {
		require.Regexp(t, `^BUG: sleeping function called from invalid context at lockclass/rcu_test\.go:\d+$`, r.Headline)
	}
}

// RCU_LOCKDEP_WARN holds only while lockdep looks
// (debug_lockdep_rcu_enabled): with validation switched off, inside Off, or
// after a report turned it off, SynchronizeRCU inside a read section gets
// might_sleep's BUG alone, and still returns rather than wait for itself.
func TestSuspiciousRCUQuietWhileLockdepIsOff(t *testing.T) {
	for _, how := range []string{"SetEnabled", "Off", "after a report"} {
		t.Run(how, func(t *testing.T) {
			krulestest.ResetDefault(t)
			rec := krulestest.Record(t)
			var m lockclass.Mutex
			m.Init(lockclass.WithName("m"))
			switch how {
			case "SetEnabled":
				defer lockclass.SetEnabled(lockclass.SetEnabled(false))
			case "Off":
				lockclass.Off()
				defer lockclass.On()
			default:
				m.Lock()
				lockclass.MightLock(&m) // AA: reported, validation off
				m.Unlock()
				require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
				rec.Clear()
			}
			lockclass.RCUReadLock()
			lockclass.SynchronizeRCU()
			lockclass.RCUReadUnlock()
			require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
		})
	}
}

// lockdep_assert_in_rcu_read_lock is WARN_ON_ONCE: each call site warns
// once.
func TestAssertInRCUReadLockWarnsOncePerSite(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	for range 2 {
		lockclass.AssertInRCUReadLock()
	}
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	lockclass.AssertInRCUReadLock()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse, krules.LockdepMisuse}, rec.Kinds())
}

// __synchronize_srcu inside an RCU read section: RCU_LOCKDEP_WARN's
// "suspicious RCU usage", then might_sleep's BUG; the SRCU's own grace
// period does not wait for the RCU section, so it completes.
func TestSRCUSynchronizeInsideRCUReadSection(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var s lockclass.SRCU
	s.Init(lockclass.WithName("&kvm->srcu"))
	lockclass.RCUReadLock()
	s.Synchronize()
	lockclass.RCUReadUnlock()
	require.Equal(t, []krules.Kind{krules.SuspiciousRCU, krules.SleepInAtomic}, rec.Kinds())
	require.Regexp(t, `\nlockclass/rcu_test\.go:\d+ Illegal synchronize_srcu\(\) in same-type SRCU \(or in RCU\) read-side critical section!\n`, rec.Reports()[0].Text)
}

// __synchronize_srcu validates before it calls might_sleep: inside its
// own read section and an atomic section, the recursive locking report
// comes first (and, validation being off then, no RCU warning).
func TestSRCUSynchronizeValidatesBeforeMightSleep(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var s lockclass.SRCU
	s.Init(lockclass.WithName("&kvm->srcu"))
	idx := s.ReadLock()
	nonblock.StartAtomic()
	s.Synchronize()
	nonblock.EndAtomic()
	s.ReadUnlock(idx)
	require.Equal(t, []krules.Kind{krules.RecursiveLocking, krules.SleepInAtomic}, rec.Kinds())
}

// srcu_read_lock is a recursive read of the srcu_struct's map
// (srcu_lock_acquire, lock_map_acquire_read): read sections of one SRCU
// nest without a report.
func TestSRCUReadSectionsNest(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	var s lockclass.SRCU
	s.Init(lockclass.WithName("&kvm->srcu"))
	outer := s.ReadLock()
	inner := s.ReadLock()
	require.True(t, lockclass.IsHeld(&s))
	s.ReadUnlock(inner)
	s.ReadUnlock(outer)
	require.False(t, lockclass.IsHeld(&s))
}

// A sync acquisition is never pushed (lock_sync), not even when it
// reports and the validator keeps going: Synchronize inside its own read
// section leaves nothing held once the section ends.
func TestSyncThatReportsIsNotPushedWithKeepGoing(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.KeepGoing())
	var s lockclass.SRCU
	s.Init(lockclass.WithValidator(v), lockclass.WithName("&kvm->srcu"))
	idx := s.ReadLock()
	s.Synchronize()
	s.ReadUnlock(idx)
	// Validation stays on: RCU_LOCKDEP_WARN sees the SRCU held as well.
	require.Equal(t, []krules.Kind{krules.RecursiveLocking, krules.SuspiciousRCU}, rec.Kinds())
	require.False(t, lockclass.IsHeld(&s))
	require.Nil(t, task.Lookup())
}
