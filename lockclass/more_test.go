//go:build !krules_nolockdep

package lockclass_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
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

func TestValidatorsDoNotSeeEachOther(t *testing.T) {
	krulestest.Check(t)
	v1, v2 := lockclass.NewValidator(), lockclass.NewValidator()
	a, b := mutex(v1, "A"), mutex(v2, "B")
	a.Lock()
	b.Lock()
	b.Unlock()
	a.Unlock()
	b.Lock()
	a.Lock() // the reverse order, but across validators: no edge either way
	tk := task.Lookup()
	require.Len(t, tk.Lockdep.Held, 2, "both stay in the held-lock list")
	a.Unlock()
	b.Unlock()
	require.Zero(t, v1.Stats().Entries)
	require.Zero(t, v2.Stats().Entries)
}

func TestDowngradeIsValidatedAsARead(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	var s1, s2 lockclass.RWSem
	s1.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("S"))
	s2.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("S"))
	s1.Lock()
	_, _, line, _ := runtime.Caller(0)
	s1.Downgrade() // line+1: lock_downgrade records its ip as the hold's site
	tk := task.Lookup()
	require.EqualValues(t, 1, tk.Lockdep.Held[0].Read)
	require.True(t, strings.HasSuffix(stack.FormatPC(tk.Lockdep.Held[0].Site), fmt.Sprintf(" lockclass/more_test.go:%d", line+1)),
		stack.FormatPC(tk.Lockdep.Held[0].Site))
	lockclass.AssertHeldRead(&s1)
	require.Zero(t, rec.Len())
	s2.RLock() // r after r of one class: recursive
	s2.RUnlock()
	s1.RUnlock()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.Nil(t, task.Lookup())
}

func TestSetClassOnAHeldLockRevalidates(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	other := registeredKey()
	a, b := mutex(v, "A"), mutex(v, "B")
	b.Lock()
	a.Lock()
	a.Unlock()
	b.Unlock() // B -> A
	a.Lock()
	b.Lock() // would close the cycle ...
	b.Unlock()
	a.Unlock()
	require.Equal(t, 1, rec.Len())
	rec.Clear()

	v2 := lockclass.NewValidator()
	c, d := mutex(v2, "C"), mutex(v2, "D")
	d.Lock()
	c.Lock()
	c.Unlock()
	d.Unlock() // D -> C
	c.Lock()
	lockclass.SetClassAndName(c, other, "C'") // held: the stack is rebuilt in the new class
	require.Contains(t, task.LabelOf(&task.Lookup().Lockdep.Held[0]), "(C')")
	d.Lock() // C' -> D: no cycle, C' is a new class
	d.Unlock()
	c.Unlock()
	require.Zero(t, rec.Len())
	lockclass.SetSubclass(c, 2)
	c.Lock()
	require.Contains(t, task.LabelOf(&task.Lookup().Lockdep.Held[0]), "(C'/2)")
	c.Unlock()
}

func TestWithSubclassIsTheDefault(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	var parent, child lockclass.Mutex
	parent.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("&n->lock"))
	child.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("&n->lock"), lockclass.WithSubclass(1))
	parent.Lock()
	child.Lock() // plain Lock, subclass 1 by default
	require.Contains(t, task.LabelOf(&task.Lookup().Lockdep.Held[1]), "(&n->lock/1)")
	child.Unlock()
	parent.Unlock()
}

func TestChainLimit(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.WithLimits(lockclass.Limits{Chains: 2}))
	a, b, c := mutex(v, "A"), mutex(v, "B"), mutex(v, "C")
	a.Lock()
	b.Lock()
	c.Lock()
	c.Unlock()
	b.Unlock()
	a.Unlock()
	require.Equal(t, []krules.Kind{krules.LockdepLimit}, rec.Kinds())
	require.Equal(t, "BUG: MAX_LOCKDEP_CHAINS too low!", rec.Last().Headline)
	require.Nil(t, task.Lookup())
}

// A limit that runs out turns validation off even for a validator that
// keeps going after reports, and the lock whose chain did not fit is not
// pushed (lookup_chain_cache_add fails, so __lock_acquire returns 0).
func TestChainLimitUnderKeepGoingLeavesTheLockUntracked(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.KeepGoing(), lockclass.WithLimits(lockclass.Limits{Chains: 2}))
	a, b, c := mutex(v, "A"), mutex(v, "B"), mutex(v, "C")
	a.Lock()
	b.Lock()
	c.Lock()
	require.Equal(t, []krules.Kind{krules.LockdepLimit}, rec.Kinds())
	require.False(t, v.Enabled())
	require.Len(t, task.Lookup().Lockdep.Held, 2, "C is not tracked")
	c.Unlock()
	b.Unlock()
	a.Unlock()
	require.Equal(t, 1, rec.Len())
	require.Nil(t, task.Lookup())
}

// The chain hlocks may be used up exactly; one more than the limit is
// "BUG: MAX_LOCKDEP_CHAIN_HLOCKS too low!" (alloc_chain_hlocks).
func TestChainHlocksLimitIsInclusive(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.WithLimits(lockclass.Limits{ChainHlocks: 3}))
	a, b := mutex(v, "A"), mutex(v, "B")
	a.Lock()
	b.Lock() // 1 + 2 hlocks: full, no report
	b.Unlock()
	a.Unlock()
	require.Zero(t, rec.Len())
	require.Equal(t, 3, v.Stats().ChainHlocks)
	var out strings.Builder
	require.NoError(t, v.WriteChains(&out))
	require.True(t, strings.HasPrefix(out.String(), "(buggered) all lock chains:\n"),
		"lockdep_chains_show marks a full hlock table (nr_free_chain_hlocks == 0)")

	v2 := lockclass.NewValidator(lockclass.WithLimits(lockclass.Limits{ChainHlocks: 2}))
	c, d := mutex(v2, "C"), mutex(v2, "D")
	c.Lock()
	d.Lock() // 1 + 2 hlocks do not fit in 2
	d.Unlock()
	c.Unlock()
	require.Equal(t, []krules.Kind{krules.LockdepLimit}, rec.Kinds())
	require.Equal(t, "BUG: MAX_LOCKDEP_CHAIN_HLOCKS too low!", rec.Last().Headline)
}

// Every chain validated for the first time is a chain cache miss
// (lookup_chain_cache_add counts chain_lookup_misses); an acquisition
// under a cached chain is not.
func TestChainLookupMissesCountNewChains(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a, b := mutex(v, "A"), mutex(v, "B")
	for range 3 {
		a.Lock()
		b.Lock()
		b.Unlock()
		a.Unlock()
	}
	st := v.Stats()
	require.Equal(t, 2, st.Chains)
	require.EqualValues(t, 2, st.ChainCacheMisses)
	var out strings.Builder
	require.NoError(t, v.WriteStats(&out))
	require.Regexp(t, ` chain lookup misses: +2\n`, out.String())
	// (hardirq chains + 1) * (softirq chains + 1) * (process chains + 1)
	require.Contains(t, out.String(), "\n in-process chains:"+strings.Repeat(" ", 23)+"2\n",
		"every chain is a process-context one, in lockdep_stats_show's columns")
	require.Regexp(t, ` dependency chain hlocks used: +3 \[`, out.String(), "[A] and [A B]")
	require.Regexp(t, fmt.Sprintf(` stack-trace entries: +%d \[max: \d+\]\n number of stack traces: +%d\n`,
		st.StackTraceEntries, st.StackTraces), out.String())
	require.Greater(t, st.StackTraceEntries, st.StackTraces)
	require.Regexp(t, ` combined max dependencies: +3\n`, out.String())
	require.Regexp(t, ` debug_locks: +1\n`, out.String())
}

// lockdep_stats prints debug_locks as it is: 0 once a report turned
// validation off.
func TestStatsShowDebugLocksOffAfterAReport(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	m := lockclass.NewMap("M", lockclass.WithValidator(v))
	m.Acquire()
	m.Acquire()
	m.Release()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	var out strings.Builder
	require.NoError(t, v.WriteStats(&out))
	require.Regexp(t, ` debug_locks: +0\n`, out.String())
}

// __might_resched and __cant_sleep print debug_show_held_locks, which
// says only "INFO: lockdep is turned off." once a report has turned the
// kernel's lockdep off (debug_locks); lockdep_off (Off) does not silence it.
func TestSleepReportsSayLockdepIsOffOnceAReportTurnedItOff(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var held lockclass.Mutex
	held.Init(lockclass.WithName("&drv->lock"))
	// The lock is taken first: under lockdep_off no acquisition is tracked.
	sleepReports := func(off bool) (might, cant string) {
		rec.Clear()
		held.Lock()
		if off {
			lockclass.Off()
		}
		nonblock.StartAtomic()
		nonblock.MightSleep()
		nonblock.EndAtomic()
		nonblock.CantSleep()
		if off {
			lockclass.On()
		}
		held.Unlock()
		require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.AssumeAtomic}, rec.Kinds())
		return rec.Reports()[0].Text, rec.Reports()[1].Text
	}
	might, cant := sleepReports(false)
	require.Contains(t, might, "preempt_count: 1, expected: 0\n1 lock held by ")
	require.Contains(t, cant, "\n1 lock held by ")
	might, cant = sleepReports(true)
	require.Contains(t, might, "\n1 lock held by ", "lockdep_off leaves debug_locks alone")
	require.Contains(t, cant, "\n1 lock held by ")

	rec.Clear()
	m := lockclass.NewMap("M") // the default validator: the kernel's debug_locks
	m.Acquire()
	m.Acquire()
	m.Release()
	m.Release()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	might, cant = sleepReports(false)
	require.Contains(t, might, "preempt_count: 1, expected: 0\nINFO: lockdep is turned off.\n")
	require.Contains(t, cant, "\nINFO: lockdep is turned off.\n")
	require.NotContains(t, might+cant, "held by ")
}

// The dependency list entries may be used up exactly (two per
// dependency); the next dependency is "BUG: MAX_LOCKDEP_ENTRIES too low!"
// (alloc_list_entry).
func TestEntriesLimitIsInclusive(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.WithLimits(lockclass.Limits{Entries: 2}))
	a, b, c := mutex(v, "A"), mutex(v, "B"), mutex(v, "C")
	a.Lock()
	b.Lock() // A -> B: both entries
	b.Unlock()
	a.Unlock()
	require.Zero(t, rec.Len())
	require.Equal(t, 2, v.Stats().Entries)
	b.Lock()
	c.Lock() // B -> C does not fit
	c.Unlock()
	b.Unlock()
	require.Equal(t, []krules.Kind{krules.LockdepLimit}, rec.Kinds())
	require.Equal(t, "BUG: MAX_LOCKDEP_ENTRIES too low!", rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "BUG: MAX_LOCKDEP_ENTRIES too low!\nturning off the locking correctness validator.\n",
		"print_lockdep_off")
	require.False(t, v.Enabled())
}

// MAX_LOCKDEP_CHAIN_HLOCKS is five times MAX_LOCKDEP_CHAINS: a chain limit
// alone sizes the hlocks with it.
func TestChainLimitSizesTheChainHlocks(t *testing.T) {
	v := lockclass.NewValidator(lockclass.WithLimits(lockclass.Limits{Chains: 10}))
	var out strings.Builder
	require.NoError(t, v.WriteStats(&out))
	require.Regexp(t, ` dependency chains: +0 \[max: 10\]\n dependency chain hlocks used: +0 \[max: 50\]\n`, out.String())
}

// DEBUG_LOCKS_WARN_ON prints only while debug_locks is on (it warns when
// debug_locks_off() turned it off): once a report or an exhausted limit
// turned validation off, using a destroyed mutex says nothing more, also
// for a validator that keeps going after reports.
func TestNoMisuseWarningAfterValidationIsOff(t *testing.T) {
	for _, keepGoing := range []bool{false, true} {
		t.Run(fmt.Sprintf("keepGoing=%v", keepGoing), func(t *testing.T) {
			rec := krulestest.Record(t)
			opts := []lockclass.ValidatorOption{lockclass.WithLimits(lockclass.Limits{Chains: 2})}
			if keepGoing {
				opts = append(opts, lockclass.KeepGoing())
			}
			v := lockclass.NewValidator(opts...)
			a, b, c := mutex(v, "A"), mutex(v, "B"), mutex(v, "C")
			a.Lock()
			b.Lock()
			c.Lock() // the third chain does not fit: validation off
			c.Unlock()
			b.Unlock()
			a.Unlock()
			require.Equal(t, []krules.Kind{krules.LockdepLimit}, rec.Kinds())
			require.False(t, v.Enabled())
			m := mutex(v, "M")
			m.Destroy()
			m.Lock()
			m.Unlock()
			require.Equal(t, 1, rec.Len())
		})
	}
}

func TestNoValidateAndNoTrack(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	var nv1, nv2, nt lockclass.Mutex
	nv1.Init(lockclass.WithValidator(v), lockclass.NoValidate())
	nv2.Init(lockclass.WithValidator(v), lockclass.NoValidate())
	nt.Init(lockclass.WithValidator(v), lockclass.NoTrack())
	nv1.Lock()
	nv2.Lock() // same class, but never validated
	nt.Lock()
	require.Len(t, task.Lookup().Lockdep.Held, 2, "no-validate locks are tracked, no-track ones are not")
	nt.Unlock()
	nv2.Unlock()
	nv1.Unlock()
	require.Zero(t, v.Stats().Entries)
}

// lock_downgrade of a read hold: "downgrading a read lock", and the hold
// and the lock stay as they were.
func TestDowngradingAReadHoldIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(lockclass.NewValidator()), lockclass.WithName("S"))
	s.RLock()
	s.Downgrade()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "downgrading a read lock")
	lockclass.AssertHeldRead(&s)
	s.RUnlock()
	require.False(t, s.IsLocked())
	require.Equal(t, 1, rec.Len())
	require.Nil(t, task.Lookup())
}

func TestDowngradeOfAnUntrackedWriteHoldIsQuiet(t *testing.T) {
	krulestest.Check(t)
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(lockclass.NewValidator()))
	lockclass.Off()
	s.Lock()
	lockclass.On()
	s.Downgrade()
	s.RUnlock()
	require.False(t, s.IsLocked())
	require.Nil(t, task.Lookup())
}

// lockdep_assert_none_held_once tests debug_locks first: once a report has
// turned the validator off, holding its locks is no longer asserted on.
func TestAssertNoneHeldQuietAfterValidationOff(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	m := mutex(v, "M")
	m.Lock()
	lockclass.MightLock(m) // AA: reported, validation off
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.False(t, v.Enabled())
	lockclass.AssertNotHeld(m)
	lockclass.AssertNoneHeld()
	m.Unlock()
	require.Equal(t, 1, rec.Len())
}

// lockdep_assert_none_held_once is WARN_ON_ONCE: each call site warns
// once, another site warns on its own.
func TestAssertNoneHeldWarnsOncePerSite(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	m := mutex(v, "M")
	m.Lock()
	for range 3 {
		lockclass.AssertNoneHeld()
	}
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	lockclass.AssertNoneHeld()
	m.Unlock()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse, krules.LockdepMisuse}, rec.Kinds())
	require.NotEqual(t, rec.Reports()[0].Headline, rec.Reports()[1].Headline, "two sites")
}

// lockdep_assert_none_held_once reads lockdep_depth, not lockdep_off: a
// lock taken before Off still counts, while one taken under it (not
// tracked) does not.
func TestAssertNoneHeldCountsLocksTakenBeforeOff(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	m, n := mutex(v, "M"), mutex(v, "N")
	lockclass.Off()
	n.Lock() // not tracked
	lockclass.AssertNoneHeld()
	n.Unlock()
	lockclass.On()
	require.Zero(t, rec.Len())
	m.Lock()
	lockclass.Off()
	lockclass.AssertNoneHeld()
	lockclass.On()
	m.Unlock()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "lockdep_assert_none_held_once(): 1 locks held")
}

// A KeepGoing validator does not cache a chain whose check reported, so
// what the chain should have taught is learnt the next time: a -> b -> c
// -> a reported, b unregistered, then c -> a is recorded and a -> c closes
// a cycle.
func TestKeepGoingLearnsAfterReport(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.KeepGoing())
	kb := registeredKey()
	a, c := mutex(v, "A"), mutex(v, "C")
	b := new(lockclass.Mutex)
	b.Init(lockclass.WithValidator(v), lockclass.WithKey(kb), lockclass.WithName("B"))
	pair := func(x, y *lockclass.Mutex) { x.Lock(); y.Lock(); y.Unlock(); x.Unlock() }
	pair(a, b)
	pair(b, c)
	pair(c, a)
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	lockclass.UnregisterKey(kb)
	pair(c, a) // no cycle without b: learnt now
	require.Equal(t, 1, rec.Len())
	pair(a, c)
	require.Equal(t, []krules.Kind{krules.CircularDependency, krules.CircularDependency}, rec.Kinds())
	require.Equal(t, "WARNING: possible circular locking dependency detected", rec.Last().Headline)
}

// v6.12's default configuration (no PROVE_RAW_LOCK_NESTING) prints
// spinlock_t and rwlock_t as {2:2}, mutex and rwsem as {3:3}.
func TestWaitTypesPrintedAsV612Default(t *testing.T) {
	rec := krulestest.Record(t)
	for _, tc := range []struct {
		l    lockclass.Lockable
		want string
	}{
		{new(lockclass.RWLock), "{2:2}"},
		{new(lockclass.SpinLock), "{2:2}"},
		{new(lockclass.Mutex), "{3:3}"},
		{new(lockclass.RWSem), "{3:3}"},
	} {
		rec.Clear()
		v := lockclass.NewValidator()
		opts := []lockclass.Option{lockclass.WithValidator(v), lockclass.WithName("L")}
		switch l := tc.l.(type) {
		case *lockclass.RWLock:
			l.Init(opts...)
			l.Lock()
			lockclass.MightLock(l)
			l.Unlock()
		case *lockclass.SpinLock:
			l.Init(opts...)
			l.Lock()
			lockclass.MightLock(l)
			l.Unlock()
		case *lockclass.Mutex:
			l.Init(opts...)
			l.Lock()
			lockclass.MightLock(l)
			l.Unlock()
		case *lockclass.RWSem:
			l.Init(opts...)
			l.Lock()
			lockclass.MightLock(l)
			l.Unlock()
		}
		require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
		require.Contains(t, rec.Last().Text, "(L){+.+.}-"+tc.want)
	}
}

// Popped held-lock entries are cleared, so an idle record keeps no lock,
// class, graph or validator alive: on the cached pop, on an out-of-order
// release, and on a release that re-validates the locks above.
func TestPoppedHeldLocksAreCleared(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a, b, c := mutex(v, "A"), mutex(v, "B"), mutex(v, "C")
	a.Lock()
	b.Lock()
	c.Lock()
	rec := task.Lookup()
	require.NotNil(t, rec)
	b.Unlock() // out of order: c is re-acquired on top of a
	c.Unlock()
	a.Unlock()
	held := rec.Lockdep.Held[:cap(rec.Lockdep.Held)]
	for i := range held {
		require.Nil(t, held[i].Instance, "entry %d", i)
		require.Nil(t, held[i].Class, "entry %d", i)
	}
}

// Package-level keys are static (static_obj).
var staticKeyA lockclass.Key

// A heap Key used without RegisterKey is the kernel's "BUG: key … has not
// been registered!" and the lock is not validated; a static key and a
// registered one are fine.
func TestUnregisteredHeapKeyIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	var a, b, c lockclass.Mutex
	a.Init(lockclass.WithValidator(v), lockclass.WithKey(&staticKeyA), lockclass.WithName("A"))
	b.Init(lockclass.WithValidator(v), lockclass.WithKey(registeredKey()), lockclass.WithName("B"))
	a.Lock()
	b.Lock()
	b.Unlock()
	a.Unlock()
	require.Zero(t, rec.Len())
	require.Equal(t, 2, v.Stats().Classes)

	heap := new(lockclass.Key)
	c.Init(lockclass.WithValidator(v), lockclass.WithKey(heap), lockclass.WithName("C"))
	c.Lock()
	require.False(t, lockclass.IsHeld(&c) && v.Enabled(), "not validated")
	c.Unlock()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Regexp(t, `^BUG: key [0-9a-f]{16} has not been registered!$`, rec.Last().Headline)
	// The BUG line, then DEBUG_LOCKS_WARN_ON(1)'s WARN().
	lines := strings.Split(rec.Last().Text, "\n")
	require.Equal(t, rec.Last().Headline, lines[0])
	require.Equal(t, "------------[ cut here ]------------", lines[1])
	require.Equal(t, "DEBUG_LOCKS_WARN_ON(1)", lines[2])
	require.Regexp(t, `^WARNING: CPU: - PID: \d+ at lockclass/more_test\.go:\d+ `, lines[3])
	require.Contains(t, rec.Last().Text, "\n---[ end trace ")
	require.Equal(t, 2, v.Stats().Classes, "no class for the unregistered key")
	require.False(t, v.Enabled())
	require.Nil(t, task.Lookup())
}

// A destroyed mutex or rwsem warns on every lock and unlock, as
// DEBUG_MUTEXES/DEBUG_RWSEMS check lock->magic, and is not validated; Init
// brings it back.
func TestUseAfterDestroyWarns(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.KeepGoing())
	m := mutex(v, "M")
	m.Lock()
	m.Unlock()
	m.Destroy()
	require.Zero(t, rec.Len())
	m.Lock()
	require.False(t, lockclass.IsHeld(m), "not validated")
	m.Unlock()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse, krules.LockdepMisuse}, rec.Kinds())
	for _, r := range rec.Reports() {
		require.Contains(t, r.Text, "DEBUG_LOCKS_WARN_ON(lock->magic != lock)")
	}
	m.Init(lockclass.WithValidator(v), lockclass.WithName("M"))
	m.Lock()
	require.True(t, lockclass.IsHeld(m))
	m.Unlock()
	require.Equal(t, 2, rec.Len())

	rec.Clear()
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(v), lockclass.WithName("S"))
	s.Destroy()
	s.RLock()
	s.RUnlock()
	s.Lock()
	s.Unlock()
	require.Equal(t, 4, rec.Len())
	for _, r := range rec.Reports() {
		require.Equal(t, krules.LockdepMisuse, r.Kind)
		require.Contains(t, r.Text, "DEBUG_RWSEMS_WARN_ON(sem->magic != sem)")
	}
	require.Nil(t, task.Lookup())
}

// up_read_non_owner with no read hold warns and leaves the semaphore alone.
func TestRUnlockNonOwnerWithoutReadHold(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(v), lockclass.WithName("S"))
	s.RUnlockNonOwner()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "DEBUG_RWSEMS_WARN_ON(!is_rwsem_reader_owned(sem))")
	require.False(t, s.IsLocked())
	s.Lock() // the state is intact: a writer gets in
	s.Unlock()
	s.RLockNonOwner()
	done := make(chan struct{})
	go func() { s.RUnlockNonOwner(); close(done) }()
	<-done
	require.False(t, s.IsLocked())
	require.Equal(t, 1, rec.Len())
}

// DEBUG_RWSEMS_WARN_ON is WARN_ONCE and is not gated by debug_locks:
// up_read_non_owner without a read hold warns even after a report turned
// validation off, and only once; with KeepGoing too.
func TestRUnlockNonOwnerWarnsOnceWhateverTheValidation(t *testing.T) {
	for _, keepGoing := range []bool{false, true} {
		t.Run(fmt.Sprint("keepGoing=", keepGoing), func(t *testing.T) {
			rec := krulestest.Record(t)
			var opts []lockclass.ValidatorOption
			if keepGoing {
				opts = append(opts, lockclass.KeepGoing())
			}
			v := lockclass.NewValidator(opts...)
			m := mutex(v, "M")
			m.Lock()
			lockclass.MightLock(m) // AA
			m.Unlock()
			require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
			rec.Clear()
			var s lockclass.RWSem
			s.Init(lockclass.WithValidator(v), lockclass.WithName("S"))
			s.RUnlockNonOwner()
			s.RUnlockNonOwner()
			require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
			require.Contains(t, rec.Last().Text, "DEBUG_RWSEMS_WARN_ON(!is_rwsem_reader_owned(sem))")
		})
	}
}

// DEBUG_RWSEMS_WARN_ON turns validation off after its warning
// (debug_locks_off), unless the validator keeps going.
func TestRUnlockNonOwnerWarningTurnsValidationOff(t *testing.T) {
	for _, keepGoing := range []bool{false, true} {
		t.Run(fmt.Sprint("keepGoing=", keepGoing), func(t *testing.T) {
			rec := krulestest.Record(t)
			var opts []lockclass.ValidatorOption
			if keepGoing {
				opts = append(opts, lockclass.KeepGoing())
			}
			v := lockclass.NewValidator(opts...)
			var s lockclass.RWSem
			s.Init(lockclass.WithValidator(v), lockclass.WithName("S"))
			s.RUnlockNonOwner()
			require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
			require.Equal(t, keepGoing, v.Enabled())
		})
	}
}

// With validation switched off the semaphore is a plain one: up_read_non_owner
// without a read hold is quiet (SetEnabled turns every check off, the
// DEBUG_RWSEMS one too).
func TestRUnlockNonOwnerQuietWhileSwitchedOff(t *testing.T) {
	rec := krulestest.Record(t)
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(lockclass.NewValidator()), lockclass.WithName("S"))
	defer lockclass.SetEnabled(lockclass.SetEnabled(false))
	s.RUnlockNonOwner()
	require.Empty(t, rec.Kinds())
	require.False(t, s.IsLocked())
}

// down_read_nested and down_read_killable take the semaphore for read as
// down_read does (read = 1, not a recursive read): a second down_read of a
// semaphore the goroutine holds for read is "possible recursive locking
// detected" (check_deadlock lets only a recursive read, read = 2, pass).
func TestRWSemSecondReadHoldIsRecursiveLocking(t *testing.T) {
	for name, rlock := range map[string]func(*testing.T, *lockclass.RWSem){
		"RLockNested":   func(_ *testing.T, s *lockclass.RWSem) { s.RLockNested(0) },
		"RLockKillable": func(t *testing.T, s *lockclass.RWSem) { require.NoError(t, s.RLockKillable(context.Background())) },
	} {
		t.Run(name, func(t *testing.T) {
			rec := krulestest.Record(t)
			var s lockclass.RWSem
			s.Init(lockclass.WithValidator(lockclass.NewValidator()), lockclass.WithName("S"))
			s.RLock()
			rlock(t, &s)
			require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
			s.RUnlock()
			s.RUnlock()
			require.Nil(t, task.Lookup())
		})
	}
}

// RLocker is sync.RWMutex.RLocker: the read side as a sync.Locker.
func TestRWSemRLocker(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(v), lockclass.WithName("S"))
	l := s.RLocker()
	l.Lock()
	lockclass.AssertHeldRead(&s)
	require.True(t, s.IsLocked())
	require.False(t, s.TryLock())
	l.Unlock()
	require.False(t, s.IsLocked())
}

var testPrime lockclass.PrimeKey

// PrimeOnce runs its priming once per validator generation, with nothing
// held whatever the caller holds, and again after Reset.
func TestPrimeOnceRunsOncePerGeneration(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	a, b, held := mutex(v, "A"), mutex(v, "B"), mutex(v, "H")
	runs := 0
	prime := func() {
		runs++
		a.Lock()
		b.Lock() // A -> B, and nothing else
		b.Unlock()
		a.Unlock()
	}
	held.Lock()
	v.PrimeOnce(&testPrime, prime)
	v.PrimeOnce(&testPrime, prime)
	held.Unlock()
	require.Equal(t, 1, runs)
	require.Equal(t, 2, v.Stats().Entries, "one dependency: H is not ordered before A, the priming held nothing")
	b.Lock()
	a.Lock() // B -> A closes the primed A -> B
	a.Unlock()
	b.Unlock()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())

	v.Reset()
	v.PrimeOnce(&testPrime, prime)
	require.Equal(t, 2, runs, "a new generation primes again")
	v.PrimeOnce(&testPrime, prime)
	require.Equal(t, 2, runs)
	require.Equal(t, 2, v.Stats().Entries)
}

// debug_check_no_locks_freed covers [from, from+len): a held map that
// starts the freed memory is reported.
func TestFreedRangeIncludesItsFirstByte(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	m := lockclass.NewMap("freed_map")
	m.Acquire()
	lockclass.CheckNoLocksFreed(unsafe.Pointer(m), unsafe.Sizeof(*m))
	m.Release()
	require.Equal(t, []krules.Kind{krules.HeldLockFreed}, rec.Kinds())
	require.Equal(t, "WARNING: held lock freed!", rec.Last().Headline)
}

// debug_check_no_locks_freed tests the whole lock map against the freed
// memory (not_in_range with sizeof(*hlock->instance)): freeing the last
// byte of a held map, which starts before the memory, is reported.
func TestFreedRangeOverlappingTheMapsEnd(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	m := lockclass.NewMap("freed_map")
	m.Acquire()
	lockclass.CheckNoLocksFreed(unsafe.Add(unsafe.Pointer(m), unsafe.Sizeof(*m)-1), 1)
	m.Release()
	require.Equal(t, []krules.Kind{krules.HeldLockFreed}, rec.Kinds())
}

// not_in_range excludes a map that ends where the freed memory begins; and
// debug_check_no_locks_freed reports the first held lock it finds in the
// range and stops (break), even for a validator that keeps going.
func TestFreedRangeStartingRightAfterTheMapAndOneReport(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	m := lockclass.NewMap("freed_map")
	m.Acquire()
	lockclass.CheckNoLocksFreed(unsafe.Add(unsafe.Pointer(m), unsafe.Sizeof(*m)), 1)
	m.Release()
	require.Empty(t, rec.Kinds())

	v := lockclass.NewValidator(lockclass.KeepGoing())
	var pair struct{ a, b lockclass.Mutex }
	pair.a.Init(lockclass.WithValidator(v), lockclass.WithName("a"))
	pair.b.Init(lockclass.WithValidator(v), lockclass.WithName("b"))
	pair.a.Lock()
	pair.b.Lock()
	lockclass.CheckNoLocksFreed(unsafe.Pointer(&pair), unsafe.Sizeof(pair))
	pair.b.Unlock()
	pair.a.Unlock()
	require.Equal(t, []krules.Kind{krules.HeldLockFreed}, rec.Kinds())
}

// A lock first taken under another and later alone is two chains: the
// one-lock chain is its own, validated and cached when it is first seen.
func TestOneLockChainOfALockFirstSeenUnderAnother(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a, b := mutex(v, "A"), mutex(v, "B")
	a.Lock()
	b.Lock()
	b.Unlock()
	a.Unlock()
	require.Equal(t, 2, v.Stats().Chains)
	b.Lock()
	b.Unlock()
	require.Equal(t, 3, v.Stats().Chains)
}

// A release puts back the chain key of the locks left held
// (lock_release's curr->curr_chain_key = hlock->prev_chain_key): A then C
// is one chain whether or not B came and went under A in between, so
// taking C under A both ways caches three chains, not four.
func TestReleaseRestoresTheChainKeyBelow(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a, b, c := mutex(v, "A"), mutex(v, "B"), mutex(v, "C")
	a.Lock()
	b.Lock()
	b.Unlock()
	c.Lock() // chain A, C
	c.Unlock()
	a.Unlock()
	require.Equal(t, 3, v.Stats().Chains) // A; A, B; A, C
	a.Lock()
	c.Lock() // the same chain A, C, cached
	c.Unlock()
	a.Unlock()
	require.Equal(t, 3, v.Stats().Chains)
}

// A release from under the top puts back the chain key below the lock
// released before the locks above it are taken again (lock_release's
// curr->curr_chain_key = hlock->prev_chain_key, then
// reacquire_held_locks): C taken again on A after B, between them, went
// is the chain A, C, the one taking C under A caches.
func TestReleaseFromUnderTheTopRestoresTheChainKeyBelow(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a, b, c := mutex(v, "A"), mutex(v, "B"), mutex(v, "C")
	a.Lock()
	b.Lock()
	c.Lock()
	b.Unlock() // C taken again on A: the chain A, C
	c.Unlock()
	a.Unlock()
	require.Equal(t, 4, v.Stats().Chains) // A; A, B; A, B, C; A, C
	a.Lock()
	c.Lock() // the same chain A, C, cached
	c.Unlock()
	a.Unlock()
	require.Equal(t, 4, v.Stats().Chains)
}

// Releasing a pinned lock warns only while lockdep validates: after a
// report has turned validation off (debug_locks_off), lock_release returns
// at once (!lockdep_enabled()), so the pin goes unremarked.
func TestReleasingAPinnedLockIsQuietOnceValidationIsOff(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	m := mutex(v, "M")
	z := lockclass.NewMap("Z", lockclass.WithValidator(v))
	m.Lock()
	lockclass.Pin(m)
	z.Release() // a bad unlock balance: validation off
	require.False(t, v.Enabled())
	m.Unlock()
	require.Equal(t, []krules.Kind{krules.BadUnlockBalance}, rec.Kinds())
	require.Nil(t, task.Lookup())
}

// Once validation is off the locks above one released are pushed back as
// they were, not acquired again: a lock of the class below, taken under
// the same nest lock, keeps its own entry rather than merging into the
// one below it (__lock_acquire's nest_lock merge is part of an
// acquisition lockdep no longer makes).
func TestReleaseOnceValidationIsOffKeepsTheEntriesAbove(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	x, a := mutex(v, "X"), mutex(v, "A")
	z := lockclass.NewMap("Z", lockclass.WithValidator(v))
	var y1, y2 lockclass.Mutex
	y1.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("Y"))
	y2.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("Y"))
	x.Lock()
	y1.LockNestLock(x)
	a.Lock()
	y2.LockNestLock(x) // not merged: A is on top
	z.Release()        // a bad unlock balance: validation off
	require.Equal(t, []krules.Kind{krules.BadUnlockBalance}, rec.Kinds())
	a.Unlock()
	held := task.Lookup().Lockdep.Held
	require.Len(t, held, 3, "X, Y, Y")
	require.Zero(t, held[2].References)
	y2.Unlock()
	y1.Unlock()
	x.Unlock()
	require.Nil(t, task.Lookup())
}

// The nest lock is looked for as lock_is_held looks (match_held_lock):
// a nest lock merged into a reference-counted entry of its class is held.
func TestNestLockHeldThroughAMergedEntry(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	o := mutex(v, "O")
	var a1, a2 lockclass.Mutex
	a1.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("A"))
	a2.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("A"))
	b := mutex(v, "B")
	o.Lock()
	a1.LockNestLock(o)
	a2.LockNestLock(o) // merged into a1's entry
	require.Len(t, task.Lookup().Lockdep.Held, 2)
	b.LockNestLock(&a2)
	require.Empty(t, rec.Kinds())
	b.Unlock()
	a2.Unlock()
	a1.Unlock()
	o.Unlock()
	require.Empty(t, rec.Kinds())
	require.Nil(t, task.Lookup())
}

// find_held_lock takes a reference-counted entry for the lock released only
// if it is of that lock's class: releasing a lock not held, while a merged
// entry of another class is, is a bad unlock balance and leaves the merged
// entry's references alone.
func TestReleaseOfAnUnheldLockLeavesAnotherClassMergedEntry(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	o := mutex(v, "O")
	z := lockclass.NewMap("Z", lockclass.WithValidator(v))
	z.Acquire() // Z's class registered: the search has a class to match
	z.Release()
	var a1, a2 lockclass.Mutex
	a1.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("A"))
	a2.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("A"))
	o.Lock()
	a1.LockNestLock(o)
	a2.LockNestLock(o) // merged into a1's entry
	z.Release()
	require.Equal(t, []krules.Kind{krules.BadUnlockBalance}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "is trying to release lock (Z) at:")
	held := task.Lookup().Lockdep.Held
	require.Len(t, held, 2)
	require.EqualValues(t, 2, held[1].References)
	a2.Unlock()
	a1.Unlock()
	o.Unlock()
	require.Nil(t, task.Lookup())
}

// lock_is_held_type(l, 1) counts a recursive read hold (read_lock's read
// = 2) as a read hold, and lockdep_assert_held_write fails on a read hold;
// while validation is off the held state is unknown, and the held
// assertions stay quiet (WARN_ON(debug_locks && ...)).
func TestHeldAssertionsByMode(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	var rw lockclass.RWLock
	rw.Init(lockclass.WithValidator(v), lockclass.WithName("&dev->rwlock"))
	rw.RLock()
	lockclass.AssertHeldRead(&rw)
	lockclass.AssertHeld(&rw)
	require.Empty(t, rec.Kinds())
	lockclass.AssertHeldWrite(&rw)
	rw.RUnlock()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "lockdep_assert_held_write(&dev->rwlock): lock not held for write\n")

	m := mutex(v, "M")
	prev := lockclass.SetEnabled(false)
	lockclass.AssertHeld(m)
	lockclass.AssertHeldWrite(m)
	lockclass.AssertHeldRead(m)
	lockclass.SetEnabled(prev)
	require.Len(t, rec.Reports(), 1, "validation off: nothing asserted")
}

// debug_check_no_locks_freed covers [from, from+len) and no more: a held
// map that starts right after the freed memory is not reported.
func TestFreedRangeExcludesTheByteAfterIt(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	obj := new(struct {
		freed [16]byte
		m     lockclass.Map
	})
	obj.m.Acquire()
	lockclass.CheckNoLocksFreed(unsafe.Pointer(obj), unsafe.Offsetof(obj.m))
	obj.m.Release()
}

// lockdep_set_class_and_name puts the lock in subclass 0 of the key's class,
// whatever subclass it had: a lock moved after lockdep_set_subclass is
// then the same class as the key's other locks.
func TestSetClassResetsTheSubclass(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	a, b := mutex(v, "A"), mutex(v, "B")
	lockclass.SetSubclass(b, 1)
	key := registeredKey()
	lockclass.SetClassAndName(a, key, "&n->lock")
	lockclass.SetClassAndName(b, key, "&n->lock")
	a.Lock()
	b.Lock()
	b.Unlock()
	a.Unlock()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
}

// lockdep_set_novalidate_class keeps the lock tracked (held, listed,
// asserted on) but never validated, unlike the no-track class.
func TestSetNoValidateClassKeepsTheLockTracked(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a, b := mutex(v, "A"), mutex(v, "B")
	lockclass.SetNoValidateClass(a)
	lockclass.SetNoValidateClass(b)
	a.Lock()
	b.Lock() // the same class, never validated
	require.True(t, lockclass.IsHeld(a))
	require.Len(t, task.Lookup().Lockdep.Held, 2)
	b.Unlock()
	a.Unlock()
}

// lock_set_class (__lock_set_class) rewinds the chain key to the key below
// the lock before re-acquiring it in its new class: the held lock then
// makes the chain A, C', validated as new, and A -> C' is recorded even
// though the chain A, C, C' was cached before.
func TestSetClassOnAHeldLockRewindsTheChainKey(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	a, c := lockclass.NewMap("A", lockclass.WithValidator(v)), lockclass.NewMap("C", lockclass.WithValidator(v))
	c2 := lockclass.NewMap("C'", lockclass.WithValidator(v), lockclass.WithKey(k))
	a.Acquire()
	c.Acquire()
	c2.Acquire() // the chain A, C, C' is cached
	c2.Release()
	c.Release()
	a.Release()
	a.Acquire()
	c.Acquire()
	lockclass.SetClassAndName(c, k, "C'")
	require.Contains(t, task.LabelOf(&task.Lookup().Lockdep.Held[1]), "(C')")
	c.Release()
	a.Release()
	var out strings.Builder
	require.NoError(t, v.WriteClasses(&out))
	require.Regexp(t, `: A\n -> \[[0-9a-f]+\] C\n -> \[[0-9a-f]+\] C'\n\n`, out.String())
}

// lock_set_class returns at once when !lockdep_enabled(), under
// lockdep_off and once debug_locks is off, before __lock_set_class
// re-initialises the map: the held entry keeps its class, and so does the
// lock's next acquisition.
func TestSetClassUnderLockdepOffLeavesTheHeldLockAlone(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	c := lockclass.NewMap("C", lockclass.WithValidator(v))
	c.Acquire()
	lockclass.Off()
	lockclass.SetClassAndName(c, k, "C'")
	lockclass.SetSubclass(c, 1)
	lockclass.On()
	require.Contains(t, task.LabelOf(&task.Lookup().Lockdep.Held[0]), "(C)")
	c.Release()
	c.Acquire()
	require.Contains(t, task.LabelOf(&task.Lookup().Lockdep.Held[0]), "(C)")
	c.Release()
	require.Equal(t, "C", c.Name())
}

// The same once debug_locks is off: a report turned the validator off
// while the lock was held, and lock_set_class on it does nothing.
func TestSetClassAfterDebugLocksOffLeavesTheHeldLockAlone(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	c := lockclass.NewMap("C", lockclass.WithValidator(v))
	c.Acquire()
	twice := lockclass.NewMap("T", lockclass.WithValidator(v))
	twice.Acquire()
	twice.Acquire()
	twice.Release()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.False(t, v.Enabled())
	lockclass.SetClassAndName(c, k, "C'")
	require.Equal(t, "C", c.Name())
	require.Contains(t, task.LabelOf(&task.Lookup().Lockdep.Held[0]), "(C)")
	c.Release()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
}

// On a lock the caller does not hold SetClass is lockdep_set_class, that
// is lockdep_init_map_type, which sets the key whatever lockdep_enabled()
// says: under lockdep_off, and with the validator off, the lock's next
// acquisition has the new class (its name shows it while off).
func TestSetClassOnAnUnheldLockRekeysItWhileLockdepIsOff(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	c := lockclass.NewMap("C", lockclass.WithValidator(v))
	lockclass.Off()
	lockclass.SetClassAndName(c, k, "C'")
	lockclass.On()
	c.Acquire()
	require.Contains(t, task.LabelOf(&task.Lookup().Lockdep.Held[0]), "(C')")
	c.Release()

	twice := lockclass.NewMap("T", lockclass.WithValidator(v))
	twice.Acquire()
	twice.Acquire()
	twice.Release()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.False(t, v.Enabled())
	lockclass.SetClassAndName(c, registeredKey(), "C''")
	require.Equal(t, "C''", c.Name())
}

// lock_set_subclass and lock_set_class on a held lock (__lock_set_class)
// give the held entry its subclass, but re-initialise the lock's map with
// subclass 0 (lockdep_init_map_type(lock, name, key, 0, ...)): the lock's
// next plain acquisition is subclass 0 again, so under another lock of its
// class it is recursive locking. (On an unheld lock lockdep_set_subclass
// makes the subclass the default: TestSetClassOnAHeldLockRevalidates.)
func TestSetSubclassOnAHeldLockLastsForThatHold(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	var a, b lockclass.Mutex
	a.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("I"))
	b.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("I"))
	b.Lock()
	lockclass.SetSubclass(&b, 1)
	require.Contains(t, task.LabelOf(&task.Lookup().Lockdep.Held[0]), "(I/1)")
	a.Lock() // I/1 -> I: two classes
	a.Unlock()
	b.Unlock()
	require.Zero(t, rec.Len())

	b.Lock()
	require.Contains(t, task.LabelOf(&task.Lookup().Lockdep.Held[0]), "(I)")
	a.Lock() // I under I
	a.Unlock()
	b.Unlock()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())

	rec.Clear()
	k2 := registeredKey()
	m := lockclass.NewMap("M", lockclass.WithValidator(lockclass.NewValidator()))
	m.Acquire()
	lockclass.SetClassAndSubclass(m, k2, 2)
	require.Regexp(t, `^\(M#2/2\)`, task.LabelOf(&task.Lookup().Lockdep.Held[0]), "the new key's class, after M's own")
	m.Release()
	m.Acquire()
	require.Regexp(t, `^\(M#\d+\)`, task.LabelOf(&task.Lookup().Lockdep.Held[0]), "subclass 0 of the new key")
	lockclass.SetClassAndSubclass(m, k2, 2)
	lockclass.SetClass(m, k2) // lock_set_class(..., 0, ...): subclass 0 again
	require.Regexp(t, `^\(M#\d+\)`, task.LabelOf(&task.Lookup().Lockdep.Held[0]))
	m.Release()
	require.Zero(t, rec.Len())
}

// lockdep_set_class_and_subclass gives the lock its key's class at the
// given subclass (lockdep_init_map_type with subclass), which plain
// acquisitions then use.
func TestSetClassAndSubclassSetsTheDefaultSubclass(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	m := lockclass.NewMap("M", lockclass.WithValidator(v))
	lockclass.SetClassAndSubclass(m, registeredKey(), 3)
	m.Acquire()
	require.Contains(t, task.LabelOf(&task.Lookup().Lockdep.Held[0]), "(M/3)")
	m.Release()
}

// lock_downgrade of a lock the goroutine does not hold: with nothing held
// at all, __lock_downgrade's first check, DEBUG_LOCKS_WARN_ON(!depth); with
// another lock held, the search fails: a bad unlock balance. Either turns
// the validator off.
func TestDowngradeOfAnUnheldLock(t *testing.T) {
	for _, holding := range []bool{false, true} {
		t.Run(fmt.Sprint("holding another: ", holding), func(t *testing.T) {
			rec := krulestest.Record(t)
			v := lockclass.NewValidator()
			other := mutex(v, "other")
			var s lockclass.RWSem
			s.Init(lockclass.WithValidator(v), lockclass.WithName("S"))
			if holding {
				other.Lock()
				defer other.Unlock()
			}
			s.Downgrade()
			if holding {
				require.Equal(t, []krules.Kind{krules.BadUnlockBalance}, rec.Kinds())
				require.Contains(t, rec.Last().Text, "is trying to release lock (S) at:")
			} else {
				require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
				require.Contains(t, rec.Last().Text, "DEBUG_LOCKS_WARN_ON(!depth)")
			}
			require.False(t, v.Enabled(), "debug_locks off")
		})
	}
	require.Nil(t, task.Lookup())
}

// lock_downgrade returns at once under lockdep_off(): a read hold
// downgraded meanwhile is not "downgrading a read lock".
func TestDowngradingAReadHoldUnderLockdepOffIsQuiet(t *testing.T) {
	krulestest.Check(t)
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(lockclass.NewValidator()), lockclass.WithName("S"))
	s.RLock()
	lockclass.Off()
	s.Downgrade()
	lockclass.On()
	lockclass.AssertHeldRead(&s)
	s.RUnlock()
	require.Nil(t, task.Lookup())
}

// lock_downgrade rebuilds the stack from the downgraded hold
// (reacquire_held_locks from the chain key below it): the hold and the
// locks above it land on the chains a read acquisition makes, found in the
// cache, at the bottom of the stack as above another lock.
func TestDowngradeRejoinsTheReadAcquisitionsChains(t *testing.T) {
	krulestest.Check(t)
	for _, below := range []bool{false, true} {
		v := lockclass.NewValidator()
		a, b := mutex(v, "A"), mutex(v, "B")
		var s lockclass.RWSem
		s.Init(lockclass.WithValidator(v), lockclass.WithName("S"))
		run := func(downgrade bool) {
			if below {
				a.Lock()
			}
			if downgrade {
				s.Lock()
				s.Downgrade()
			} else {
				s.RLock()
			}
			b.Lock()
			b.Unlock()
			s.RUnlock()
			if below {
				a.Unlock()
			}
		}
		run(false)
		n := v.Stats().Chains
		run(true)
		require.Equal(t, n+1, v.Stats().Chains, "below another lock: %v; only the write hold's chain is new", below)
	}
	require.Nil(t, task.Lookup())
}

// lock_downgrade re-validates the locks above the hold
// (reacquire_held_locks): the read hold ordered before a lock that was
// taken before it is the inversion again, which a validator that keeps
// going reports a second time.
func TestDowngradeRevalidatesTheLocksAbove(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.KeepGoing())
	b := mutex(v, "B")
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(v), lockclass.WithName("S"))
	b.Lock()
	s.Lock()
	s.Unlock()
	b.Unlock()
	s.Lock()
	b.Lock() // S -> B against B -> S
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	s.Downgrade() // S (read) -> B: a new chain, the same inversion
	require.Equal(t, []krules.Kind{krules.CircularDependency, krules.CircularDependency}, rec.Kinds())
	b.Unlock()
	s.RUnlock()
}

// lock_unpin_lock with a cookie one too big takes pin_count to -1: "pin
// count corrupted", and the count is reset to 0, so the release that
// follows is not "releasing a pinned lock".
func TestUnpinByOneTooManyIsCorruption(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	m := mutex(v, "M")
	m.Lock()
	c := lockclass.Pin(m)
	lockclass.Unpin(m, c+1)
	m.Unlock()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "pin count corrupted")
}

// lock_repin_lock adds back exactly the cookie: pin, unpin, repin and
// unpin with one cookie leave the lock unpinned, and releasing it is quiet.
func TestRepinAddsTheCookieBack(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	m := mutex(v, "M")
	m.Lock()
	c := lockclass.Pin(m)
	lockclass.Unpin(m, c)
	lockclass.Repin(m, c)
	lockclass.Unpin(m, c)
	m.Unlock()
	require.Empty(t, rec.Kinds())
}

// A dependency takes two list entries (add_lock_to_list, forwards and
// backwards): with room for three, the second dependency does not fit.
func TestEntriesLimitCountsTwoPerDependency(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.WithLimits(lockclass.Limits{Entries: 3}))
	a, b, c := mutex(v, "A"), mutex(v, "B"), mutex(v, "C")
	recordPairAside(a, b)
	require.Empty(t, rec.Kinds())
	recordPairAside(a, c)
	require.Equal(t, []krules.Kind{krules.LockdepLimit}, rec.Kinds())
	require.Equal(t, "BUG: MAX_LOCKDEP_ENTRIES too low!", rec.Last().Headline)
}

// Disable is debug_locks_off as add_taint calls it for LOCKDEP_NOW_UNRELIABLE:
// it turns validation off without a report, says whether this call did it
// (so the caller prints its pr_warn once), and the validator then proves
// nothing, as after a report, until Reset. For the default validator,
// reports from outside lockdep stop listing held locks.
func TestDisableTurnsValidationOffOnce(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	require.True(t, v.Enabled())
	require.True(t, v.Disable())
	require.False(t, v.Disable(), "already off")
	require.False(t, v.Enabled())
	a := lockclass.NewMap("A", lockclass.WithValidator(v))
	b := lockclass.NewMap("B", lockclass.WithValidator(v))
	a.Acquire()
	b.Acquire()
	b.Release()
	a.Release()
	b.Acquire()
	a.Acquire()
	a.Release()
	b.Release()
	require.Empty(t, rec.Reports(), "an inversion is not proved while off")
	v.Reset()
	require.True(t, v.Enabled())

	krulestest.ResetDefault(t)
	var held lockclass.Mutex
	held.Init(lockclass.WithName("&drv->lock"))
	require.True(t, lockclass.Default().Disable())
	held.Lock()
	nonblock.CantSleep()
	held.Unlock()
	require.Equal(t, []krules.Kind{krules.AssumeAtomic}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "\nINFO: lockdep is turned off.\n")
}

// Reset is lockdep_reset: lockdep_init_task(current) empties the calling
// goroutine's held locks, so releasing one it held across the reset is a
// bad unlock balance (the lock itself is still unlocked), and it leaves
// lockdep_off; a lock of another validator stays held, and another
// goroutine's lock held across the reset is released quietly.
func TestResetForgetsOnlyTheCallersLocks(t *testing.T) {
	rec := krulestest.Record(t)
	v, other := lockclass.NewValidator(), lockclass.NewValidator()
	a, b, o := mutex(v, "A"), mutex(v, "B"), mutex(other, "O")

	held, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		b.Lock()
		close(held)
		<-release
		b.Unlock()
	}()
	<-held

	a.Lock()
	o.Lock()
	lockclass.Off()
	v.Reset()
	require.True(t, lockclass.IsHeld(o), "another validator's lock stays held")
	close(release)
	<-done
	require.Zero(t, rec.Len(), "the other goroutine's release is quiet")

	lockclass.AssertHeld(a) // validated again, Off being over: not held
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "lockdep_assert_held(A): lock not held")
	a.Unlock()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse, krules.BadUnlockBalance}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "is trying to release lock (A) at:")
	require.True(t, a.TryLock(), "the lock itself was released")
	a.Unlock()
	o.Unlock()
	require.Len(t, rec.Kinds(), 2)
	lockclass.On() // unmatched after the reset: no effect
	require.Nil(t, task.Lookup())
}
