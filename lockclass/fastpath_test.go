//go:build !krules_nolockdep

package lockclass_test

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// The uncontended Mutex.Lock and RWSem.RLock take the lock first and annotate
// a cached chain after. These tests pin down that nothing a kernel developer
// can observe changes with that order.

// warm takes and drops each lock once in order, so the chain is cached.
func warm(ls ...*lockclass.Mutex) {
	for _, l := range ls {
		l.Lock()
	}
	for i := range ls {
		ls[len(ls)-1-i].Unlock()
	}
}

// cachedMutexAndRWSem returns a mutex and an rwsem whose one-lock chains
// (write for the mutex, read for the rwsem) are cached.
func cachedMutexAndRWSem(v *lockclass.Validator) (*lockclass.Mutex, *lockclass.RWSem) {
	m := mutex(v, "M")
	s := new(lockclass.RWSem)
	s.Init(lockclass.WithValidator(v), lockclass.WithName("S"))
	warm(m)
	s.RLock()
	s.RUnlock()
	return m, s
}

func TestUncontendedLockInANonBlockSectionStillMightSleep(t *testing.T) {
	rec := krulestest.Record(t)
	m, s := cachedMutexAndRWSem(lockclass.NewValidator())
	require.Zero(t, rec.Len())

	nonblock.Start()
	m.Lock()
	m.Unlock()
	s.RLock()
	s.RUnlock()
	nonblock.End()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.SleepInAtomic}, rec.Kinds())
	require.Contains(t, rec.Reports()[0].Headline, "BUG: sleeping function called from invalid context at ")
	require.Nil(t, task.Lookup(), "both locks and the section are gone")
}

func TestCachedLockRecordsTheCallersSite(t *testing.T) {
	krulestest.Check(t)
	m, s := cachedMutexAndRWSem(lockclass.NewValidator())

	_, _, line, _ := runtime.Caller(0)
	m.Lock()
	s.RLock()
	held := task.Lookup().Lockdep.Held
	require.Len(t, held, 2)
	for i, h := range held {
		require.Contains(t, stack.FormatPC(h.Site), "lockclass/fastpath_test.go:"+strconv.Itoa(line+1+i))
		require.Contains(t, stack.FormatPC(h.Site), "TestCachedLockRecordsTheCallersSite")
	}
	s.RUnlock()
	m.Unlock()
	require.Nil(t, task.Lookup())
}

// lockThrough locks l through the sync.Locker interface, where the
// compiler cannot inline Lock, and returns the line it did so at.
//
//go:noinline
func lockThrough(l sync.Locker) int {
	_, _, line, _ := runtime.Caller(0)
	l.Lock()
	return line + 1
}

// Lock is inlined for validation off's sake; called where it is not (through
// sync.Locker, or from a function too big to inline into), it still
// records its caller's site, not its own code, on the quick path and on
// the whole way alike.
func TestLockThroughALockerRecordsTheCallersSite(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	for _, warmFirst := range []bool{false, true} {
		m := mutex(v, "M"+strconv.FormatBool(warmFirst))
		if warmFirst {
			warm(m)
		}
		line := lockThrough(m)
		held := task.Lookup().Lockdep.Held
		require.Len(t, held, 1)
		require.Contains(t, stack.FormatPC(held[0].Site), "lockclass_test.lockThrough+")
		require.Contains(t, stack.FormatPC(held[0].Site), "lockclass/fastpath_test.go:"+strconv.Itoa(line))
		m.Unlock()
	}
	require.Nil(t, task.Lookup())
}

// A lock whose last chain was validated under one set of locks (the per-map
// memo) and is then taken under another goes through validation again, so
// the inversion that follows is reported.
func TestCachedLockUnderNewLocksIsValidatedAgain(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	a, b, c := mutex(v, "A"), mutex(v, "B"), mutex(v, "C")
	for range 3 {
		warm(a, b) // A -> B, then cached and memoised
	}
	warm(c, b) // C -> B: a new chain under B's memo
	for range 3 {
		warm(a, b) // both chains cached now, B's memo alternating
		warm(c, b)
	}
	require.Zero(t, rec.Len())
	warm(b, c) // B -> C closes C -> B
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "WARNING: possible circular locking dependency detected")
}

// Recursive locking of a cached class by another instance is still
// reported, and the lock that was free is not left locked.
func TestUncontendedRecursionOnAClassIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	key := registeredKey()
	m1, m2 := new(lockclass.Mutex), new(lockclass.Mutex)
	m1.Init(lockclass.WithValidator(v), lockclass.WithKey(key), lockclass.WithName("&dev->lock"))
	m2.Init(lockclass.WithValidator(v), lockclass.WithKey(key), lockclass.WithName("&dev->lock"))
	warm(m1)
	m1.Lock()
	m2.Lock()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	m2.Unlock()
	m1.Unlock()
	require.False(t, m1.IsLocked())
	require.False(t, m2.IsLocked())
}

// The last holder's record is only a guess: another goroutine taking the
// lock next uses its own.
func TestLockAfterAnotherGoroutineUsesItsOwnRecord(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	m := mutex(v, "M")
	done := make(chan struct{})
	go func() {
		defer close(done)
		warm(m)
		warm(m)
	}()
	<-done
	m.Lock()
	lockclass.AssertHeld(m)
	require.Len(t, task.Lookup().Lockdep.Held, 1)
	m.Unlock()
	lockclass.AssertNotHeld(m)
	require.Nil(t, task.Lookup())
}

// The quick push writes only the fields a cached acquisition sets: the
// others must be zero in every slot past the top, whatever was popped from
// it (a lock_stat stamp, a pin, a nest_lock reference).
func TestQuickPushFindsItsSlotClean(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	outer, inner := mutex(v, "outer"), mutex(v, "inner")
	warm(outer, inner)
	warm(outer, inner)

	defer lockclass.SetLockStat(lockclass.SetLockStat(true))
	warm(outer, inner) // stamped entries, popped the slow way
	lockclass.SetLockStat(false)

	outer.Lock()
	inner.LockNestLock(outer) // a nest_lock entry in slot 1
	cookie := lockclass.Pin(inner)
	lockclass.Unpin(inner, cookie)
	inner.Unlock()
	outer.Unlock()

	outer.Lock()
	inner.Lock() // both quick: slots 0 and 1 reused
	held := task.Lookup().Lockdep.Held
	require.Len(t, held, 2)
	for i, h := range held {
		require.Zero(t, h.Stamp, "slot %d", i)
		require.Nil(t, h.NestLock, "slot %d", i)
		require.Zero(t, h.References, "slot %d", i)
		require.Zero(t, h.PinCount, "slot %d", i)
		require.True(t, h.Check, "slot %d", i)
		require.False(t, h.Trylock, "slot %d", i)
	}
	inner.Unlock()
	outer.Unlock()
	require.Nil(t, task.Lookup())
}

// A goroutine's first held-lock stack starts on a cache line and fills a
// slot of whole lines (task.HeldCap): two goroutines' stacks, written on
// every lock and unlock, do not share a line.
func TestHeldStacksDoNotShareCacheLines(t *testing.T) {
	krulestest.Check(t)
	m := mutex(lockclass.NewValidator(), "M")
	for range 4 {
		done := make(chan uintptr)
		go func() {
			m.Lock()
			held := task.Lookup().Lockdep.Held
			done <- uintptr(unsafe.Pointer(unsafe.SliceData(held)))
			m.Unlock()
		}()
		require.Zero(t, <-done%64)
	}
}

// With goroutine ids unknown to SiteID and GoID (0: the start-up check
// failed, or a -race build), the cached paths resolve the id on their miss
// paths: the locks are still annotated on the caller's own record, an
// inversion is still reported, the owner's unlock is not a bad unlock
// balance, and the records are dropped.
// bothIDWays runs a suite twice: with the goroutine id read in place, the
// way the cached paths take on amd64 (the Mutex guess, RWSem's ClaimHead,
// the WWMutex merge), and with it unknown to them, as after a failed
// start-up check (task.ForceSlowPath), so that the kernel's verdicts hold
// on both.
func bothIDWays(t *testing.T, suite func(t *testing.T)) {
	t.Run("id in place", suite)
	t.Run("id unknown", func(t *testing.T) {
		defer task.ForceSlowPath("test: ids unknown to the fast paths")()
		suite(t)
	})
}

func TestCachedPathsWithUnknownGoroutineIDs(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	a, b := mutex(v, "A"), mutex(v, "B")
	s := new(lockclass.RWSem)
	s.Init(lockclass.WithValidator(v), lockclass.WithName("S"))
	defer task.ForceSlowPath("test: ids unknown to the fast paths")()
	require.Zero(t, task.GoID())
	for range 3 {
		warm(a, b)
		a.Lock()
		s.RLock()
		require.Len(t, task.Lookup().Lockdep.Held, 2)
		require.Nil(t, task.LookupID(0), "no record for the unknown id")
		s.RUnlock()
		a.Unlock()
		require.Nil(t, task.Lookup())
	}
	require.Zero(t, rec.Len())
	warm(b, a)
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	require.Nil(t, task.Lookup())
}

// A trylock on the cached path marks its class used in its mode, as the
// slow path would: an rwsem written once and then read only by trylock
// lists read usage ({++++}, not {+.+.}), both id ways.
func TestCachedTrylockMarksItsUsage(t *testing.T) {
	bothIDWays(t, func(t *testing.T) {
		v := lockclass.NewValidator()
		s := new(lockclass.RWSem)
		s.Init(lockclass.WithValidator(v), lockclass.WithName("S"))
		s.Lock()
		s.Unlock()
		var before strings.Builder
		require.NoError(t, v.WriteClasses(&before))
		require.Contains(t, before.String(), " +.+.: S\n")
		require.True(t, s.TryRLock())
		s.RUnlock()
		var after strings.Builder
		require.NoError(t, v.WriteClasses(&after))
		require.Contains(t, after.String(), " ++++: S\n")
	})
}

// A validator reset makes every class stale, cached chains included: the
// same ordering taken again records its dependency in the new graph (the
// quick tier must not push with the stale class), so the inversion that
// follows is reported.
func TestResetForgetsCachedChains(t *testing.T) {
	bothIDWays(t, func(t *testing.T) {
		rec := krulestest.Record(t)
		v := lockclass.NewValidator()
		a, b := mutex(v, "A"), mutex(v, "B")
		warm(a, b)
		warm(a, b) // cached, the quick tier's last chains
		v.Reset()
		warm(a, b)
		require.Zero(t, rec.Len())
		warm(b, a)
		require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	})
}
