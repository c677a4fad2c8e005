//go:build !krules_nolockdep

package lockclass_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

func mutex(v *lockclass.Validator, name string) *lockclass.Mutex {
	m := new(lockclass.Mutex)
	m.Init(lockclass.WithValidator(v), lockclass.WithKey(registeredKey()), lockclass.WithName(name))
	return m
}

// registeredKey returns a dynamic key, registered as lockdep_register_key
// wants (a Key in a heap object is not static).
func registeredKey() *lockclass.Key {
	k := new(lockclass.Key)
	lockclass.RegisterKey(k)
	return k
}

// The circular report's layout (print_circular_bug in
// kernel/locking/lockdep.c), line by line.
func TestCircularReportLayout(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	a, b, c := mutex(v, "&a->lock"), mutex(v, "&b->lock"), mutex(v, "&c->lock")
	a.Lock()
	b.Lock() // A -> B
	b.Unlock()
	a.Unlock()
	b.Lock()
	c.Lock() // B -> C
	c.Unlock()
	b.Unlock()
	c.Lock()
	a.Lock() // C -> A closes A -> B -> C -> A
	a.Unlock()
	c.Unlock()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "WARNING: possible circular locking dependency detected", r.Headline)
	lines := strings.Split(r.Text, "\n")
	require.Equal(t, strings.Repeat("=", len(r.Headline)), lines[0])
	require.Equal(t, r.Headline, lines[1])
	require.Regexp(t, `^krules go\S+ (Not tainted|Tainted: G +W {9})$`, lines[2], "the release, then the taint, as under a kernel headline")
	require.Equal(t, strings.Repeat("-", len(r.Headline)), lines[3])
	require.Regexp(t, `^TestCircularReportLayout/\d+ is trying to acquire lock:$`, lines[4])
	require.Regexp(t, `^[0-9a-f]{16} \(&a->lock\)\{\+\.\+\.\}-\{3:3\}, at: lockclass_test\.TestCircularReportLayout\+0x[0-9a-f]+ lockclass/lockclass_test\.go:\d+$`, lines[5])
	require.Equal(t, "", lines[6])
	require.Equal(t, "but task is already holding lock:", lines[7])
	require.Regexp(t, `^[0-9a-f]{16} \(&c->lock\)\{\+\.\+\.\}-\{3:3\}, at: `, lines[8])
	text := r.Text
	for _, want := range []string{
		"\nwhich lock already depends on the new lock.\n\n\nthe existing dependency chain (in reverse order) is:\n",
		"\n-> #2 (&c->lock){+.+.}-{3:3}:\n       lockclass.(*Mutex).Lock+",
		"\n-> #1 (&b->lock){+.+.}-{3:3}:\n       lockclass.(*Mutex).Lock+",
		"\n-> #0 (&a->lock){+.+.}-{3:3}:\n       lockclass.(*Mutex).Lock+",
		"\nother info that might help us debug this:\n\nChain exists of:\n  &a->lock --> &b->lock --> &c->lock\n\n",
		" Possible unsafe locking scenario:\n\n" +
			"       CPU0                    CPU1\n" +
			"       ----                    ----\n" +
			"  lock(&c->lock);\n" +
			"                               lock(&b->lock);\n" +
			"                               lock(&c->lock);\n" +
			"  lock(&a->lock);\n\n *** DEADLOCK ***\n\n1 lock held by TestCircularReportLayout/",
		"\n #0: ",
		"\n\nstack backtrace:\nCPU: - UID: ",
		"Call Trace:\n <TASK>\n lockclass.(*Mutex).Lock+",
	} {
		require.Contains(t, text, want)
	}
	// Each link carries the stack that first recorded it: B -> C was seen
	// at the line taking c under b.
	require.Regexp(t, `-> #1 \(&b->lock\)\S+:\n +lockclass\.\(\*Mutex\)\.Lock\+0x[0-9a-f]+ \S+\n +lockclass_test\.TestCircularReportLayout\+0x[0-9a-f]+ lockclass/lockclass_test\.go:\d+\n`, text)
}

// recordPairAside takes second under first and lets both go, in a frame of
// its own: the stack a dependency is recorded with names it.
//
//go:noinline
func recordPairAside(first, second *lockclass.Mutex) {
	first.Lock()
	second.Lock()
	second.Unlock()
	first.Unlock()
}

// print_circular_bug_entry prints each link with the stack saved when the
// dependency was added (lock_list.trace), and only #0, the root, with the
// current one (print_circular_bug's save_trace).
func TestCircularReportLinksCarryTheirOwnStacks(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	a, b := mutex(v, "&a->lock"), mutex(v, "&b->lock")
	recordPairAside(a, b) // A -> B
	b.Lock()
	a.Lock() // B -> A closes it
	a.Unlock()
	b.Unlock()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	text := rec.Last().Text
	one := strings.Index(text, "\n-> #1 (&b->lock)")
	zero := strings.Index(text, "\n-> #0 (&a->lock)")
	require.True(t, one >= 0 && zero > one, text)
	require.Contains(t, text[one:zero], "lockclass_test.recordPairAside+")
	require.NotContains(t, text[zero:], "recordPairAside")
}

func TestTwoLockCycleHasNoChainLineAndReadScenario(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(v), lockclass.WithName("&mm->mmap_lock"))
	m := mutex(v, "&dev->lock")
	s.RLock()
	m.Lock()
	m.Unlock()
	s.RUnlock()
	m.Lock()
	s.RLock() // rwsem_ABBA2: r then N, strong
	s.RUnlock()
	m.Unlock()
	r := rec.Last()
	require.NotNil(t, r)
	require.Equal(t, krules.CircularDependency, r.Kind)
	require.NotContains(t, r.Text, "Chain exists of:")
	require.Contains(t, r.Text, "  lock(&dev->lock);\n                               lock(&mm->mmap_lock);\n                               lock(&dev->lock);\n  rlock(&mm->mmap_lock);\n")
	require.Contains(t, r.Text, "(&mm->mmap_lock){.+.+}-{3:3}")
}

// print_circular_lock_scenario prints the held lock as "rlock" when it is
// held for reading, non-recursive reads (read 1) included.
func TestCircularScenarioPrintsAReadHoldAsRlock(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	a, s := lockclass.NewMap("A", lockclass.WithValidator(v)), lockclass.NewMap("S", lockclass.WithValidator(v))
	a.Acquire()
	s.Acquire() // A -> S
	s.Release()
	a.Release()
	s.AcquireShared()
	a.Acquire() // S (read) -> A closes the cycle
	s.Release()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "  rlock(S);\n                               lock(A);\n                               lock(S);\n  lock(A);\n")
}

// print_freed_lock_bug prints the freed range with its last byte,
// mem_to - 1.
func TestHeldLockFreedPrintsTheRangesLastByte(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	m := mutex(v, "M")
	m.Lock()
	from := uintptr(unsafe.Pointer(m))
	lockclass.CheckNoLocksFreed(unsafe.Pointer(m), unsafe.Sizeof(*m))
	m.Unlock()
	require.Equal(t, []krules.Kind{krules.HeldLockFreed}, rec.Kinds())
	require.Contains(t, rec.Last().Text, fmt.Sprintf(" is freeing memory %016x-%016x, with a lock still held there!\n", from, from+unsafe.Sizeof(*m)-1))
}

// lockdep_chains skips the classes that were zapped (!class->key): a chain
// recorded while a lock of an unregistered key was still held lists only
// the live classes.
func TestChainsViewSkipsZappedClasses(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	m := lockclass.NewMap("M", lockclass.WithValidator(v), lockclass.WithKey(k))
	d := lockclass.NewMap("D", lockclass.WithValidator(v))
	m.Acquire()
	lockclass.UnregisterKey(k)
	d.Acquire() // the chain M, D with M zapped
	d.Release()
	m.Release()
	var out strings.Builder
	require.NoError(t, v.WriteChains(&out))
	require.NotContains(t, out.String(), "] M\n")
	require.Contains(t, out.String(), "] D\n")
}

func TestRecursiveReportLayout(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	var x1, x2 lockclass.SpinLock
	x1.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("&x->lock"))
	x2.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("&x->lock"))
	x1.Lock()
	x2.Lock()
	x2.Unlock()
	x1.Unlock()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	r := rec.Last()
	require.Regexp(t, `(?s)^============================================\nWARNING: possible recursive locking detected\n.*\n--------------------------------------------\n`+
		`TestRecursiveReportLayout/\d+ is trying to acquire lock:\n[0-9a-f]{16} \(&x->lock\)\{\+\.\+\.\}-\{2:2\}, at: .*\n\n`+
		`but task is already holding lock:\n[0-9a-f]{16} \(&x->lock\)\{\+\.\+\.\}-\{2:2\}, at: .*\n\n`+
		`other info that might help us debug this:\n Possible unsafe locking scenario:\n\n       CPU0\n       ----\n  lock\(&x->lock\);\n  lock\(&x->lock\);\n\n \*\*\* DEADLOCK \*\*\*\n\n May be due to missing lock nesting notation\n\n`+
		`1 lock held by TestRecursiveReportLayout/\d+:\n #0: .*\n\nstack backtrace:\nCPU: `, r.Text)
}

// print_deadlock_bug prints the lock being acquired first and the held one
// of the same class second: told apart by their instances.
func TestRecursiveReportNamesTheNewInstanceFirst(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	x1 := lockclass.NewMap("X", lockclass.WithValidator(v), lockclass.WithKey(k))
	x2 := lockclass.NewMap("X", lockclass.WithValidator(v), lockclass.WithKey(k))
	x1.Acquire()
	x2.Acquire()
	x1.Release()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.Contains(t, rec.Last().Text, fmt.Sprintf("is trying to acquire lock:\n%016x (X)", uintptr(unsafe.Pointer(x2))))
	require.Contains(t, rec.Last().Text, fmt.Sprintf("\nbut task is already holding lock:\n%016x (X)", uintptr(unsafe.Pointer(x1))))
}

// check_deadlock looks at every held lock, not only the top one: a class
// taken again above another lock is "possible recursive locking", unless
// the new acquisition is a recursive read over a read hold. A read hold
// below (read 1 again) or a write hold below (recursive read 2) is
// recursive locking, reported before any dependency is checked.
func TestRecursiveLockingBelowAnotherLock(t *testing.T) {
	for _, tc := range []struct {
		name         string
		first, again func(m *lockclass.Map)
		want         []krules.Kind
	}{
		{"read then read", (*lockclass.Map).AcquireShared, (*lockclass.Map).AcquireShared, []krules.Kind{krules.RecursiveLocking}},
		{"write then recursive read", (*lockclass.Map).Acquire, (*lockclass.Map).AcquireRead, []krules.Kind{krules.RecursiveLocking}},
		{"read then recursive read", (*lockclass.Map).AcquireShared, (*lockclass.Map).AcquireRead, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := krulestest.Record(t)
			v := lockclass.NewValidator()
			m, a := lockclass.NewMap("M", lockclass.WithValidator(v)), lockclass.NewMap("A", lockclass.WithValidator(v))
			tc.first(m)
			a.Acquire()
			tc.again(m)
			require.Equal(t, tc.want, rec.Kinds())
			if tc.want == nil {
				m.Release()
			}
			a.Release()
			m.Release()
			require.Nil(t, task.Lookup())
		})
	}
}

func TestBadUnlockBalanceLayout(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	m := mutex(v, "&dev->lock")
	m.Lock()
	m.Unlock()
	m.Unlock()
	require.Equal(t, []krules.Kind{krules.BadUnlockBalance}, rec.Kinds())
	require.Regexp(t, `(?s)^=====================================\nWARNING: bad unlock balance detected!\n.*\n-------------------------------------\n`+
		`TestBadUnlockBalanceLayout/\d+ is trying to release lock \(&dev->lock\) at:\n\[<[0-9a-f]{16}>\] lockclass_test\.TestBadUnlockBalanceLayout\+0x[0-9a-f]+ lockclass/lockclass_test\.go:\d+\n`+
		`but there are no more locks to release!\n\nother info that might help us debug this:\nno locks held by TestBadUnlockBalanceLayout/\d+\.\n\nstack backtrace:\n`, rec.Last().Text)
	require.False(t, m.IsLocked())
	m.Lock() // still a working lock
	m.Unlock()
}

func TestHeldLockFreedLayout(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	m := mutex(v, "&dev->lock")
	m.Lock()
	m.Destroy()
	m.Unlock()
	require.Equal(t, []krules.Kind{krules.HeldLockFreed}, rec.Kinds())
	require.Regexp(t, `(?s)^=========================\nWARNING: held lock freed!\n.*\n-------------------------\n`+
		`TestHeldLockFreedLayout/\d+ is freeing memory [0-9a-f]{16}-[0-9a-f]{16}, with a lock still held there!\n`+
		`[0-9a-f]{16} \(&dev->lock\)\{\+\.\+\.\}-\{3:3\}, at: .*\n1 lock held by TestHeldLockFreedLayout/\d+:\n #0: .*\n\nstack backtrace:\n`, rec.Last().Text)
	require.Nil(t, task.Lookup(), "the record is gone once the lock is released")
}

func TestNestLock(t *testing.T) {
	t.Run("ww_test_spin_nest_lock", func(t *testing.T) {
		rec := krulestest.Record(t)
		v := lockclass.NewValidator()
		ky := registeredKey()
		x := mutex(v, "X")
		a := mutex(v, "A")
		var y1, y2 lockclass.Mutex
		y1.Init(lockclass.WithValidator(v), lockclass.WithKey(ky), lockclass.WithName("Y"))
		y2.Init(lockclass.WithValidator(v), lockclass.WithKey(ky), lockclass.WithName("Y"))
		x.Lock()
		y1.LockNestLock(x)
		a.Lock()
		y2.LockNestLock(x) // same class, serialised by X: OK via nest
		y2.Unlock()
		a.Unlock()
		y1.Unlock()
		x.Unlock()
		require.Zero(t, rec.Len())
	})
	t.Run("merge", func(t *testing.T) {
		rec := krulestest.Record(t)
		v := lockclass.NewValidator()
		ky := registeredKey()
		x := mutex(v, "X")
		var y1, y2 lockclass.Mutex
		y1.Init(lockclass.WithValidator(v), lockclass.WithKey(ky), lockclass.WithName("Y"))
		y2.Init(lockclass.WithValidator(v), lockclass.WithKey(ky), lockclass.WithName("Y"))
		x.Lock()
		y1.LockNestLock(x)
		y2.LockNestLock(x) // merged into y1's entry
		tk := task.Lookup()
		require.Len(t, tk.Lockdep.Held, 2)
		require.EqualValues(t, 2, tk.Lockdep.Held[1].References)
		y1.Unlock() // either instance releases a reference
		require.True(t, lockclass.IsHeld(&y2))
		y2.Unlock()
		require.Len(t, tk.Lockdep.Held, 1)
		x.Unlock()
		require.Zero(t, rec.Len())
		require.Nil(t, task.Lookup())
	})
	t.Run("ww_test_spin_nest_unlocked", func(t *testing.T) {
		rec := krulestest.Record(t)
		v := lockclass.NewValidator()
		x, a := mutex(v, "X"), mutex(v, "A")
		a.LockNestLock(x)
		a.Unlock()
		require.Equal(t, []krules.Kind{krules.NestedLockNotTaken}, rec.Kinds())
		// print_lock_nested_lock_not_held dumps the stack twice: after the
		// nest lock's name, and after the held locks.
		require.Regexp(t, `(?s)\nbut this task is not holding:\nX\n\nstack backtrace:\nCPU: .*\nother info that might help us debug this:\nno locks held by [^\n]*\n\nstack backtrace:\nCPU: `, rec.Last().Text)
		require.Equal(t, 2, strings.Count(rec.Last().Text, "stack backtrace:\n"))
	})
	t.Run("same class without nest lock", func(t *testing.T) {
		rec := krulestest.Record(t)
		v := lockclass.NewValidator()
		ky := registeredKey()
		var y1, y2 lockclass.Mutex
		y1.Init(lockclass.WithValidator(v), lockclass.WithKey(ky))
		y2.Init(lockclass.WithValidator(v), lockclass.WithKey(ky))
		y1.Lock()
		y2.Lock()
		y2.Unlock()
		y1.Unlock()
		require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	})
}

// held_lock.references is an 11-bit field in v6.12: __lock_acquire's
// nest_lock merge warns when adding a reference wraps it
// (DEBUG_LOCKS_WARN_ON(hlock->references < references)), so the 2048th
// same-class lock under one nest lock warns and the 2047th does not.
func TestNestLockReferencesOverflowAt2048(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	ky := registeredKey()
	x := mutex(v, "X")
	ys := make([]lockclass.Mutex, 2048)
	for i := range ys {
		ys[i].Init(lockclass.WithValidator(v), lockclass.WithKey(ky), lockclass.WithName("Y"))
	}
	x.Lock()
	for i := range 2047 {
		ys[i].LockNestLock(x)
	}
	require.Zero(t, rec.Len())
	ys[2047].LockNestLock(x)
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "DEBUG_LOCKS_WARN_ON(hlock->references < references)")
	require.False(t, v.Enabled())
	for i := range ys {
		ys[i].Unlock()
	}
	x.Unlock()
	require.Nil(t, task.Lookup())
}

// Once a report turned debug_locks off, lock_acquire records nothing: a
// trylock of a class registered before is not pushed (__lock_acquire
// returns at once when !debug_locks).
func TestTrylockAfterAReportIsNotTracked(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	a := mutex(v, "A")
	a.Lock()
	a.Unlock()
	m := lockclass.NewMap("M", lockclass.WithValidator(v))
	m.Acquire()
	m.Acquire() // recursive: reported, validation off
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.True(t, a.TryLock())
	require.Len(t, task.Lookup().Lockdep.Held, 1, "only M")
	a.Unlock()
	m.Release()
	require.Nil(t, task.Lookup())
	require.Equal(t, 1, rec.Len())
	classes := v.Stats().Classes
	n := mutex(v, "N")
	n.Lock() // register_lock_class fails: graph_lock() fails once debug_locks is off
	n.Unlock()
	require.Equal(t, classes, v.Stats().Classes, "no class registered")
}

// The DOT export labels each dependency with its types, named as the
// kernel's DEP_*_BIT: the previous lock's mode (E exclusive, S shared), then
// the new one's (N non-recursive, R recursive read).
func TestDOTLabelsTheDependencyTypes(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a, b, c := lockclass.NewMap("A", lockclass.WithValidator(v)), lockclass.NewMap("B", lockclass.WithValidator(v)),
		lockclass.NewMap("C", lockclass.WithValidator(v))
	a.Acquire()
	b.AcquireRead() // A -(ER)-> B
	c.AcquireRead() // B -(SR)-> C
	c.Release()
	b.Release()
	a.Release()
	var out strings.Builder
	require.NoError(t, v.WriteDOT(&out))
	require.Regexp(t, `c\d+ -> c\d+ \[label="ER"\];\n(?s:.*)c\d+ -> c\d+ \[label="SR"\];\n`, out.String())
}

// An invalid subclass turns debug_locks off too (look_up_lock_class's
// debug_locks_off()); a trylock of a class registered before is then not
// tracked.
func TestTrylockAfterAnInvalidSubclassIsNotTracked(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	a, b := mutex(v, "A"), mutex(v, "B")
	a.Lock()
	a.Unlock()
	b.LockNested(8)
	require.Equal(t, []krules.Kind{krules.InvalidSubclass}, rec.Kinds())
	require.True(t, a.TryLock())
	require.Nil(t, task.Lookup(), "A is not tracked")
	a.Unlock()
	b.Unlock()
	require.Nil(t, task.Lookup())
}

// The cycle search's queue is bounded (LOCKDEP_CIRCULAR_QUEUE_BITS): a
// search that fills it is "lockdep bfs error:-1" (print_bfs_bug), and
// validation stops.
func TestFullBFSQueueIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.WithLimits(lockclass.Limits{BFSQueue: 2}))
	a, b, c, d, z := mutex(v, "A"), mutex(v, "B"), mutex(v, "C"), mutex(v, "D"), mutex(v, "Z")
	for _, m := range []*lockclass.Mutex{b, c, d} {
		a.Lock()
		m.Lock() // A -> B, A -> C, A -> D
		m.Unlock()
		a.Unlock()
	}
	require.Zero(t, rec.Len())
	z.Lock()
	a.Lock() // the search from A for Z queues B, C, D
	a.Unlock()
	z.Unlock()
	require.Equal(t, []krules.Kind{krules.LockdepLimit}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "lockdep bfs error:-1")
	require.Contains(t, rec.Last().Text, "Increase LOCKDEP_CIRCULAR_QUEUE_BITS")
	require.False(t, v.Enabled())
}

// The queue holds one element less than its size, as the kernel's
// circular queue (__cq_full): a search that queues size-1 classes passes,
// one more is "lockdep bfs error:-1"; the deepest queue is counted
// (max_bfs_queue_depth).
func TestBFSQueueBoundary(t *testing.T) {
	for _, leaves := range []int{3, 4} {
		t.Run(strconv.Itoa(leaves), func(t *testing.T) {
			rec := krulestest.Record(t)
			v := lockclass.NewValidator(lockclass.WithLimits(lockclass.Limits{BFSQueue: 4}))
			a, z := mutex(v, "A"), mutex(v, "Z")
			for i := range leaves {
				m := mutex(v, "L"+strconv.Itoa(i))
				a.Lock()
				m.Lock() // A -> Li
				m.Unlock()
				a.Unlock()
			}
			z.Lock()
			a.Lock() // the search from A for Z queues every Li
			a.Unlock()
			z.Unlock()
			if leaves == 3 {
				require.Zero(t, rec.Len())
				require.Equal(t, 3, v.Stats().MaxBFSQueueDepth)
				return
			}
			require.Equal(t, []krules.Kind{krules.LockdepLimit}, rec.Kinds())
			require.Contains(t, rec.Last().Text, "lockdep bfs error:-1")
		})
	}
}

// /proc/lockdep's FD counts a class once, however many paths reach it:
// Y, reached first through a recursive read (A -(ER)-> Y) and again
// strongly (A -> Z -> Y), is one of A's three.
func TestForwardCountCountsAClassReachedTwiceOnce(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a := lockclass.NewMap("A", lockclass.WithValidator(v))
	y := lockclass.NewMap("Y", lockclass.WithValidator(v))
	z := lockclass.NewMap("Z", lockclass.WithValidator(v))
	a.Acquire()
	y.AcquireRead() // A -(ER)-> Y
	y.Release()
	z.Acquire() // A -> Z
	y.Acquire() // Z -> Y
	y.Release()
	z.Release()
	a.Release()
	var out strings.Builder
	require.NoError(t, v.WriteClasses(&out))
	require.Regexp(t, `FD:    3 BD:    1 \+\.\+\.: A\n`, out.String())
}

// /proc/lockdep's BD follows strong paths backwards: through P1 held
// shared (P1 -(SN)-> C), a recursive read of P1 (P2 -(ER)-> P1) does not
// lead on, while an exclusive P1 (P1 -(ER)-> C) passes the way on to a
// recursive read of it (P2 -(ER)-> P1 -(ER)-> C is strong).
func TestBackwardCountFollowsStrongPaths(t *testing.T) {
	for _, tc := range []struct {
		name   string
		p1ToC  func(p1, c *lockclass.Map)
		wantBD int
	}{
		{"P1 shared", func(p1, c *lockclass.Map) { p1.AcquireShared(); c.Acquire() }, 2},
		{"P1 exclusive", func(p1, c *lockclass.Map) { p1.Acquire(); c.AcquireRead() }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			krulestest.Check(t)
			v := lockclass.NewValidator()
			p1 := lockclass.NewMap("P1", lockclass.WithValidator(v))
			p2 := lockclass.NewMap("P2", lockclass.WithValidator(v))
			c := lockclass.NewMap("C", lockclass.WithValidator(v))
			tc.p1ToC(p1, c)
			c.Release()
			p1.Release()
			p2.Acquire()
			p1.AcquireRead() // P2 -(ER)-> P1
			p1.Release()
			p2.Release()
			var out strings.Builder
			require.NoError(t, v.WriteClasses(&out))
			require.Regexp(t, fmt.Sprintf(`FD:    1 BD:    %d \S+: C\n`, tc.wantBD), out.String())
		})
	}
}

// save_trace keeps one copy of identical stacks: two dependencies
// recorded at the same stack share one trace; and a trace that does not
// fit in MAX_STACK_TRACE_ENTRIES is "BUG: MAX_STACK_TRACE_ENTRIES too
// low!".
func TestStackTracesAreShared(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	for range 2 {
		recordPairAside(mutex(v, "A"), mutex(v, "B"))
	}
	st := v.Stats()
	require.Equal(t, 4, st.Entries, "two dependencies")
	require.Equal(t, 1, st.StackTraces)
}

func TestStackTraceLimit(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.WithLimits(lockclass.Limits{StackTrace: 1}))
	recordPairAside(mutex(v, "A"), mutex(v, "B"))
	require.Equal(t, []krules.Kind{krules.LockdepLimit}, rec.Kinds())
	require.Equal(t, "BUG: MAX_STACK_TRACE_ENTRIES too low!", rec.Last().Headline)
	require.False(t, v.Enabled())
}

// The chain cache grows (at half load) past its first table of 1024
// slots: 1501 chains are all cached, and taking them again validates
// nothing.
func TestChainCacheGrows(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a := mutex(v, "A")
	ls := make([]*lockclass.Mutex, 1500)
	for i := range ls {
		ls[i] = mutex(v, "L")
	}
	take := func() {
		for _, l := range ls {
			a.Lock()
			l.Lock()
			l.Unlock()
			a.Unlock()
		}
	}
	take()
	st := v.Stats()
	require.Equal(t, 1+len(ls), st.Chains, "A alone, then A, Li for each i")
	take()
	require.Equal(t, st.ChainCacheMisses, v.Stats().ChainCacheMisses)
}

func TestTrylock(t *testing.T) {
	t.Run("never the target of an edge", func(t *testing.T) {
		rec := krulestest.Record(t)
		v := lockclass.NewValidator()
		a, b := mutex(v, "A"), mutex(v, "B")
		a.Lock()
		require.True(t, b.TryLock())
		b.Unlock()
		a.Unlock()
		b.Lock()
		a.Lock()
		a.Unlock()
		b.Unlock()
		require.Zero(t, rec.Len())
	})
	t.Run("a predecessor of later locks", func(t *testing.T) {
		rec := krulestest.Record(t)
		v := lockclass.NewValidator()
		a, b := mutex(v, "A"), mutex(v, "B")
		require.True(t, a.TryLock())
		b.Lock()
		b.Unlock()
		a.Unlock()
		b.Lock()
		a.Lock()
		a.Unlock()
		b.Unlock()
		require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	})
	t.Run("lock_map_acquire_try", func(t *testing.T) {
		rec := krulestest.Record(t)
		v := lockclass.NewValidator()
		a, b := mutex(v, "A"), mutex(v, "B")
		m := lockclass.NewMap("M", lockclass.WithValidator(v))
		a.Lock()
		m.TryAcquire() // no A -> M: a trylock is never a target
		top := task.Lookup().Lockdep.Held[1]
		require.True(t, top.Trylock)
		require.Zero(t, top.Read, "an exclusive trylock")
		m.Release()
		a.Unlock()
		m.Acquire()
		a.Lock()
		a.Unlock()
		m.Release()
		require.Zero(t, rec.Len())
		m.TryAcquire()
		b.Lock() // M -> B: a trylock is a predecessor
		b.Unlock()
		m.Release()
		b.Lock()
		m.Acquire()
		m.Release()
		b.Unlock()
		require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	})
	t.Run("trylocks above the nearest blocking lock all get edges", func(t *testing.T) {
		rec := krulestest.Record(t)
		v := lockclass.NewValidator()
		a, b, c := mutex(v, "A"), mutex(v, "B"), mutex(v, "C")
		a.Lock()
		require.True(t, b.TryLock())
		c.Lock() // B -> C and A -> C
		c.Unlock()
		b.Unlock()
		a.Unlock()
		var out strings.Builder
		require.NoError(t, v.WriteClasses(&out))
		require.Regexp(t, `FD:    2 BD:    1 \+\.\+\.: A\n\n`, out.String(), "A -> C exists, not adjacent")
		require.Regexp(t, `FD:    1 BD:    3 \+\.\+\.: C\n`, out.String())
		require.Zero(t, rec.Len())
		c.Lock()
		a.Lock()
		a.Unlock()
		c.Unlock()
		require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	})
	t.Run("failed trylock is invisible", func(t *testing.T) {
		v := lockclass.NewValidator()
		a := mutex(v, "A")
		done := make(chan struct{})
		a.Lock()
		go func() { defer close(done); require.False(t, a.TryLock()); require.Nil(t, task.Lookup()) }()
		<-done
		a.Unlock()
	})
}

func TestEdgesOnlyFromTheNearestPredecessor(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a, b, c := mutex(v, "A"), mutex(v, "B"), mutex(v, "C")
	a.Lock()
	b.Lock()
	c.Lock()
	c.Unlock()
	b.Unlock()
	a.Unlock()
	var out strings.Builder
	require.NoError(t, v.WriteClasses(&out))
	require.Regexp(t, `FD:    3 BD:    1 \+\.\+\.: A\n -> \[[0-9a-f]+\] B\n\n`, out.String())
	require.Regexp(t, `FD:    2 BD:    2 \+\.\+\.: B\n -> \[[0-9a-f]+\] C\n\n`, out.String())
	require.Regexp(t, `FD:    1 BD:    3 \+\.\+\.: C\n\n`, out.String())
	st := v.Stats()
	require.Equal(t, 3, st.Classes)
	require.Equal(t, 4, st.Entries, "two list entries per direct dependency")
	require.Equal(t, 3, st.Chains)
}

// A dependency first recorded across a trylock (distance 2) is not listed
// in /proc/lockdep; once the two locks are seen adjacent, check_prev_add
// lowers its distance to 1 and l_show lists it.
func TestDependencySeenAdjacentLaterIsListed(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a, b, c := mutex(v, "A"), mutex(v, "B"), mutex(v, "C")
	a.Lock()
	require.True(t, b.TryLock())
	c.Lock() // B -> C, and A -> C across the trylock
	c.Unlock()
	b.Unlock()
	a.Unlock()
	var out strings.Builder
	require.NoError(t, v.WriteClasses(&out))
	require.Regexp(t, `: A\n\n`, out.String(), "A -> C is two locks apart")
	require.Equal(t, 4, v.Stats().Entries)
	a.Lock()
	c.Lock()
	c.Unlock()
	a.Unlock()
	out.Reset()
	require.NoError(t, v.WriteClasses(&out))
	require.Regexp(t, `: A\n -> \[[0-9a-f]+\] C\n\n`, out.String())
	require.Equal(t, 4, v.Stats().Entries, "the same dependency")
}

// check_prev_add merges the type of a dependency seen again into the
// existing entry (entry->dep |= calc_dep()): A -> B recorded first towards
// a recursive read and then towards a write is -(EN)-> too, so A -> B ->
// C, with B -(SN)-> C, is a strong path and C -> A closes a cycle.
func TestDependencyTypesAccumulate(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	a, b, c := lockclass.NewMap("A", lockclass.WithValidator(v)), lockclass.NewMap("B", lockclass.WithValidator(v)),
		lockclass.NewMap("C", lockclass.WithValidator(v))
	a.Acquire()
	b.AcquireRead() // A -(ER)-> B
	b.Release()
	a.Release()
	a.Acquire()
	b.Acquire() // A -(EN)-> B as well
	b.Release()
	a.Release()
	b.AcquireRead()
	c.Acquire() // B -(SN)-> C
	c.Release()
	b.Release()
	require.Zero(t, rec.Len())
	c.Acquire()
	a.Acquire()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	a.Release()
	c.Release()
}

func TestOutOfOrderReleaseRebuildsAndValidates(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	a, b, c, d := mutex(v, "A"), mutex(v, "B"), mutex(v, "C"), mutex(v, "D")
	d.Lock()
	a.Lock()
	d.Unlock() // out of order is legal
	a.Unlock()
	require.Zero(t, rec.Len())
	a.Lock()
	b.Lock()
	c.Lock()
	b.Unlock() // rebuild: C re-acquired right on top of A
	var out strings.Builder
	require.NoError(t, v.WriteClasses(&out))
	require.Regexp(t, `: A\n -> \[[0-9a-f]+\] B\n -> \[[0-9a-f]+\] C\n`, out.String(), "A -> C became adjacent")
	c.Unlock()
	a.Unlock()
	require.Zero(t, rec.Len())
	require.Nil(t, task.Lookup())
	c.Lock()
	d.Lock() // C -> D closes D -> A -> B -> C
	d.Unlock()
	c.Unlock()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
}

// reacquire_held_locks gives every lock it puts back the chain key of the
// locks really below it, even when lockdep_off leaves the lock unvalidated:
// once that lock is released, a new lock is looked up in the chain cache
// under what is held, not under the released lock, and its dependency on
// the lock below is recorded (validate_chain).
func TestReleaseAfterAnUnvalidatedRebuildRestoresTheChainKey(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a, b, c, d := lockclass.NewMap("A", lockclass.WithValidator(v)), lockclass.NewMap("B", lockclass.WithValidator(v)),
		lockclass.NewMap("C", lockclass.WithValidator(v)), lockclass.NewMap("D", lockclass.WithValidator(v))
	a.Acquire()
	b.Acquire()
	d.Acquire() // the chain A, B, D is cached
	d.Release()
	b.Release()
	a.Release()
	a.Acquire()
	b.Acquire()
	c.Acquire()
	lockclass.Off()
	b.Release() // C is put back on A, unvalidated
	lockclass.On()
	c.Release()
	d.Acquire() // under A alone: the chain A, D is new, A -> D is recorded
	d.Release()
	a.Release()
	require.Nil(t, task.Lookup())
	var out strings.Builder
	require.NoError(t, v.WriteClasses(&out))
	require.Regexp(t, `: A\n -> \[[0-9a-f]+\] B\n -> \[[0-9a-f]+\] D\n\n`, out.String())
}

// A release under lockdep_off does not validate the locks it puts back
// (reacquire_held_locks runs inside lock_release, which returns when
// !lockdep_enabled()): no dependency and no chain is recorded for them.
func TestRebuildUnderLockdepOffRecordsNothing(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a, b, c := lockclass.NewMap("A", lockclass.WithValidator(v)), lockclass.NewMap("B", lockclass.WithValidator(v)),
		lockclass.NewMap("C", lockclass.WithValidator(v))
	a.Acquire()
	b.Acquire()
	c.Acquire()
	before := v.Stats()
	lockclass.Off()
	b.Release() // C is put back on A
	lockclass.On()
	after := v.Stats()
	c.Release()
	a.Release()
	require.Equal(t, before.Entries, after.Entries, "no A -> C dependency")
	require.Equal(t, before.Chains, after.Chains, "no A, C chain")
}

func TestSubclasses(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	var parent, child lockclass.Mutex
	parent.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("&inode->i_rwsem"))
	child.Init(lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName("&inode->i_rwsem"))
	parent.Lock()
	child.LockNested(1)
	tk := task.Lookup()
	require.Contains(t, task.LabelOf(&tk.Lockdep.Held[1]), "(&inode->i_rwsem/1)")
	child.Unlock()
	parent.Unlock()
	require.Zero(t, rec.Len())
	parent.LockNested(8)
	parent.Unlock()
	require.Equal(t, []krules.Kind{krules.InvalidSubclass}, rec.Kinds())
	require.Equal(t, "BUG: looking up invalid subclass: 8", rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "\nturning off the locking correctness validator.\n")
	require.False(t, v.Enabled())
}

// /proc/lockdep prints each class's key (l_show prints class->key), and a
// subclass's key is its lock_class_key's subkeys[subclass], one byte per
// subclass: subclass 1 of a key prints one above subclass 0.
func TestClassesViewPrintsSubclassKeysOneByteApart(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	x := lockclass.NewMap("X", lockclass.WithValidator(v), lockclass.WithKey(k))
	x.Acquire() // subclass 0 first: subclass 1 then shares its version
	x.Release()
	x1 := lockclass.NewMap("X", lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithSubclass(1))
	x1.Acquire()
	x1.Release()
	var out strings.Builder
	require.NoError(t, v.WriteClasses(&out))
	key := func(name string) uint64 {
		m := regexp.MustCompile(`(?m)^([0-9a-f]{16}) FD:.*: ` + regexp.QuoteMeta(name) + `$`).FindStringSubmatch(out.String())
		require.NotNil(t, m, out.String())
		n, err := strconv.ParseUint(m[1], 16, 64)
		require.NoError(t, err)
		return n
	}
	require.Equal(t, key("X")+1, key("X/1"))
}

func TestNameVersions(t *testing.T) {
	v := lockclass.NewValidator()
	a, b := mutex(v, "&lock"), mutex(v, "&lock")
	a.Lock()
	b.Lock()
	b.Unlock()
	a.Unlock()
	var out strings.Builder
	require.NoError(t, v.WriteClasses(&out))
	require.Contains(t, out.String(), ": &lock\n")
	require.Contains(t, out.String(), "] &lock#2\n")
}

// count_matching_names: a subclass shares the version of its key's
// subclass-0 class only if that is registered already; otherwise, like
// any new class, it gets one more than the highest version among the live
// classes of its name, so subclass 0 registered after subclass 1 is "X#2",
// and a zapped class's version is given out again.
func TestNameVersionsFollowTheLiveClasses(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	x1 := lockclass.NewMap("X", lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithSubclass(1))
	x := lockclass.NewMap("X", lockclass.WithValidator(v), lockclass.WithKey(k))
	x1.Acquire()
	x1.Release()
	x.Acquire()
	x.Release()
	var out strings.Builder
	require.NoError(t, v.WriteClasses(&out))
	require.Contains(t, out.String(), ": X/1\n")
	require.Contains(t, out.String(), ": X#2\n")

	a := mutex(v, "&lock")
	kb := registeredKey()
	b := lockclass.NewMap("&lock", lockclass.WithValidator(v), lockclass.WithKey(kb))
	a.Lock()
	a.Unlock()
	b.Acquire() // &lock#2
	b.Release()
	lockclass.UnregisterKey(kb)
	c := mutex(v, "&lock")
	c.Lock() // &lock#2 again: the zapped class no longer counts
	c.Unlock()
	out.Reset()
	require.NoError(t, v.WriteClasses(&out))
	require.Contains(t, out.String(), ": &lock#2\n")
	require.NotContains(t, out.String(), "&lock#3")
}

func TestInitSiteKeysAndZeroValueLocks(t *testing.T) {
	krulestest.Check(t)
	krulestest.ResetDefault(t)
	var ms [3]lockclass.Mutex
	for i := range ms {
		ms[i].Init() // one site: one class
	}
	var zero lockclass.Mutex
	for i := range ms {
		ms[i].Lock()
		ms[i].Unlock()
	}
	zero.Lock()
	zero.Unlock()
	require.Equal(t, 2, lockclass.Default().Stats().Classes)
	var out strings.Builder
	require.NoError(t, lockclass.Default().WriteClasses(&out))
	require.Regexp(t, `: lockclass/lockclass_test\.go:\d+\n`, out.String())
}

func TestLimitsTurnValidationOffAndLocksKeepWorking(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.WithLimits(lockclass.Limits{Classes: 2}))
	a, b, c := mutex(v, "A"), mutex(v, "B"), mutex(v, "C")
	a.Lock()
	b.Lock()
	c.Lock()
	c.Unlock()
	b.Unlock()
	a.Unlock()
	require.Equal(t, []krules.Kind{krules.LockdepLimit}, rec.Kinds())
	require.Equal(t, "BUG: MAX_LOCKDEP_KEYS too low!", rec.Last().Headline)
	require.False(t, v.Enabled())
	c.Lock()
	a.Lock() // no report: validation is off
	a.Unlock()
	c.Unlock()
	require.Equal(t, 1, rec.Len())
	require.Nil(t, task.Lookup())
}

func TestMaxLockDepth(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	locks := make([]*lockclass.Mutex, lockclass.MaxLockDepth)
	for i := range locks {
		locks[i] = mutex(v, "L")
	}
	for i, m := range locks {
		m.Lock()
		if i < lockclass.MaxLockDepth-1 {
			require.Zero(t, rec.Len(), "depth %d", i+1)
		}
	}
	require.Equal(t, []krules.Kind{krules.LockdepLimit}, rec.Kinds())
	require.Equal(t, "BUG: MAX_LOCK_DEPTH too low!", rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "\ndepth: 48  max: 48!\n48 locks held by ")
	// debug_show_all_locks follows the held locks, after debug_locks_off.
	require.Regexp(t, `\n #47: [0-9a-f]+ \(L#48\)[^\n]*\nINFO: lockdep is turned off\.\nCPU: `, rec.Last().Text)
	for i := len(locks) - 1; i >= 0; i-- {
		locks[i].Unlock()
	}
	require.Nil(t, task.Lookup())
}

func TestKeepGoing(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.KeepGoing())
	a, b, c := mutex(v, "A"), mutex(v, "B"), mutex(v, "C")
	for _, pair := range [][2]*lockclass.Mutex{{a, b}, {b, a}, {b, c}, {c, b}} {
		pair[0].Lock()
		pair[1].Lock()
		pair[1].Unlock()
		pair[0].Unlock()
	}
	require.Equal(t, []krules.Kind{krules.CircularDependency, krules.CircularDependency}, rec.Kinds())
	require.True(t, v.Enabled())
	require.Nil(t, task.Lookup())
}

func TestLockMaps(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	reclaim := lockclass.NewMap("fs_reclaim", lockclass.WithValidator(v))
	m := mutex(v, "&dev->lock")
	// reclaim takes the lock; an allocation under the lock might reclaim.
	reclaim.Acquire()
	m.Lock()
	m.Unlock()
	reclaim.Release()
	m.Lock()
	lockclass.MightLock(reclaim)
	m.Unlock()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "(fs_reclaim){+.+.}-{0:0}")

	rec.Clear()
	v2 := lockclass.NewValidator()
	flush := lockclass.NewMap("(wq_completion)events", lockclass.WithValidator(v2))
	l := mutex(v2, "&dev->lock")
	flush.AcquireRead()
	l.Lock()
	l.Unlock()
	flush.Release()
	l.Lock()
	flush.Sync()
	l.Unlock()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "  sync((wq_completion)events);\n")
	require.Nil(t, task.Lookup())
}

func TestMightLockReadAndNested(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(v), lockclass.WithName("S"))
	s.RLock()
	lockclass.MightLockRead(&s) // r after r: recursive
	s.RUnlock()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	v2 := lockclass.NewValidator()
	var s2 lockclass.RWSem
	s2.Init(lockclass.WithValidator(v2), lockclass.WithName("S"))
	s2.Lock()
	lockclass.MightLockNested(&s2, 1) // another subclass: fine
	s2.Unlock()
	require.Equal(t, 1, rec.Len())
}

// might_lock_nested is a read acquisition: include/linux/lockdep.h passes
// read = 1 to lock_acquire, so the class it names is marked as used for
// reading (mark_usage sets LOCK_ENABLED_*_READ), never for writing.
func TestMightLockNestedMarksAReadUse(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	s := lockclass.NewMap("S", lockclass.WithValidator(v))
	lockclass.MightLockNested(s, 1)
	var out strings.Builder
	require.NoError(t, v.WriteClasses(&out))
	require.Regexp(t, `FD:    1 BD:    1 \.\+\.\+: S/1\n`, out.String())
	st := v.Stats()
	require.Equal(t, 1, st.ReadUsed)
	require.Zero(t, st.WriteUsed)
}

func TestAssertionsAndPins(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	m := mutex(v, "M")
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(v), lockclass.WithName("S"))
	lockclass.AssertNotHeld(m)
	lockclass.AssertNoneHeld()
	require.False(t, lockclass.IsHeld(m))
	m.Lock()
	s.RLock()
	lockclass.AssertHeld(m)
	lockclass.AssertHeldWrite(m)
	lockclass.AssertHeldRead(&s)
	require.True(t, lockclass.IsHeld(m))
	require.Zero(t, rec.Len())
	lockclass.AssertHeldRead(m)
	lockclass.AssertNotHeld(m)
	lockclass.AssertNoneHeld()
	require.Equal(t, 3, rec.Len())
	for _, r := range rec.Reports() {
		require.Equal(t, krules.LockdepMisuse, r.Kind)
		require.Regexp(t, `^WARNING: CPU: - PID: \d+ at lockclass/lockclass_test\.go:\d+ `, r.Headline)
	}
	rec.Clear()
	c := lockclass.Pin(m)
	lockclass.Unpin(m, c)
	c = lockclass.Pin(m)
	s.RUnlock()
	m.Unlock() // pinned
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "releasing a pinned lock")
	lockclass.Unpin(m, c)
	require.Equal(t, 2, rec.Len())
	require.Contains(t, rec.Last().Text, "unpinning an unheld lock")
	require.Nil(t, task.Lookup())
}

func TestOffOn(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a, b := mutex(v, "A"), mutex(v, "B")
	a.Lock()
	b.Lock()
	b.Unlock()
	a.Unlock()
	lockclass.Off()
	b.Lock()
	a.Lock() // ignored
	require.True(t, lockclass.IsHeld(a), "unknown while off")
	a.Unlock()
	b.Unlock()
	lockclass.On()
	require.True(t, v.Enabled())
	require.Nil(t, task.Lookup())
}

// lockdep_off nests (each call adds LOCKDEP_OFF to lockdep_recursion and
// lockdep_on takes one away): validation resumes only at the last On, and
// an On without an Off is ignored instead of turning validation off.
func TestOffNestsAndAnUnmatchedOnIsIgnored(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	m := lockclass.NewMap("M", lockclass.WithValidator(v))
	lockclass.Off()
	lockclass.Off()
	lockclass.On()
	m.Acquire()
	m.Acquire() // still off: not seen
	m.Release()
	m.Release()
	lockclass.On()
	require.Zero(t, rec.Len())
	m.Acquire()
	lockclass.On() // unmatched, with a lock held
	m.Acquire()    // validated: recursive
	m.Release()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.Nil(t, task.Lookup())
}

func TestSetEnabledMakesPlainLocks(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a, b := mutex(v, "A"), mutex(v, "B")
	a.Lock()
	prev := lockclass.SetEnabled(false)
	b.Lock()
	b.Unlock()
	a.Unlock() // acquired while on: released properly
	require.Nil(t, task.Lookup())
	b.Lock()
	lockclass.SetEnabled(prev)
	b.Unlock() // acquired while off: a plain unlock, not a bad balance
	require.True(t, v.Enabled())
}

func TestRegisterUnregisterKeyZapsClasses(t *testing.T) {
	krulestest.ResetDefault(t) // for a fresh WARN_ON_ONCE
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	type obj struct {
		key lockclass.Key
		mu  lockclass.Mutex
	}
	o := new(obj)
	lockclass.RegisterKey(&o.key)
	o.mu.Init(lockclass.WithValidator(v), lockclass.WithKey(&o.key), lockclass.WithName("&obj->mu"))
	other := mutex(v, "other")
	o.mu.Lock()
	other.Lock()
	other.Unlock()
	o.mu.Unlock()
	before := v.Stats()
	require.Equal(t, 2, before.Classes)
	require.Equal(t, 2, before.Entries)
	lockclass.UnregisterKey(&o.key)
	after := v.Stats()
	require.Equal(t, 1, after.Classes)
	require.Zero(t, after.Entries)
	require.Equal(t, 1, after.ZappedClasses)
	require.Equal(t, 2, before.Chains)
	require.Zero(t, after.Chains, "the chains mentioning it are gone")
	require.Equal(t, 2, after.ZappedChains)
	require.Zero(t, after.ChainHlocks, "the zapped chains' hlocks are freed")
	// No memory of the old order: the reverse is fine now.
	lockclass.RegisterKey(&o.key)
	other.Lock()
	o.mu.Lock()
	o.mu.Unlock()
	other.Unlock()
	require.Zero(t, rec.Len())
	lockclass.UnregisterKey(&o.key)
	lockclass.UnregisterKey(&o.key)
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
}

// staticKey is a package-level Key: static_obj, as a DEFINE'd key is.
var staticKey lockclass.Key

// lockdep_register_key and lockdep_unregister_key refuse a static key
// (WARN_ON_ONCE(static_obj(key))): it is not registered, and its classes
// are not zapped, so the order recorded under it stays.
func TestRegisterAndUnregisterRefuseAStaticKey(t *testing.T) {
	krulestest.ResetDefault(t) // for a fresh WARN_ON_ONCE
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	lockclass.RegisterKey(&staticKey)
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "lockdep_register_key: key ")
	require.Contains(t, rec.Last().Text, " is static")
	rec.Clear()
	var s lockclass.Mutex
	s.Init(lockclass.WithValidator(v), lockclass.WithKey(&staticKey), lockclass.WithName("S"))
	other := mutex(v, "other")
	s.Lock()
	other.Lock()
	other.Unlock()
	s.Unlock()
	lockclass.UnregisterKey(&staticKey)
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "lockdep_unregister_key: key ")
	require.Equal(t, 2, v.Stats().Classes, "nothing zapped")
	rec.Clear()
	other.Lock()
	s.Lock() // other -> S closes S -> other
	s.Unlock()
	other.Unlock()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
}

// lockdep_unregister_key might sleep (it waits for a grace period):
// might_sleep comes first, even for a key that is then refused.
func TestUnregisterKeyMightSleep(t *testing.T) {
	rec := krulestest.Record(t)
	k := registeredKey()
	nonblock.StartAtomic()
	lockclass.UnregisterKey(k)
	nonblock.EndAtomic()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
}

// WARN_ON_ONCE(!found && debug_locks): unregistering an unknown key is
// quiet once validation is off.
func TestUnregisteringAnUnknownKeyIsQuietWhileValidationIsOff(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var m lockclass.Mutex
	m.Init(lockclass.WithName("m"))
	m.Lock()
	lockclass.MightLock(&m) // AA: reported, validation off
	m.Unlock()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	lockclass.UnregisterKey(new(lockclass.Key))
	// lockdep_register_key looks for the key only once graph_lock has
	// succeeded, which it does not with debug_locks off.
	k := registeredKey()
	lockclass.RegisterKey(k)
	lockclass.UnregisterKey(k)
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
}

// Zapping a key's classes (lockdep_unregister_key → zap_class) also drops
// the dependencies other classes have on them; a lock using the key again
// gets a fresh class and is tracked, and the fresh class takes the zapped
// one's slot (__free_zapped_classes puts zapped classes at the head of
// free_lock_classes, which register_lock_class takes from first).
func TestZapDropsDependenciesOnTheClassAndFreesItsSlot(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	other := lockclass.NewMap("other", lockclass.WithValidator(v))
	m := lockclass.NewMap("M", lockclass.WithValidator(v), lockclass.WithKey(k))
	after := lockclass.NewMap("after", lockclass.WithValidator(v))
	other.Acquire()
	m.Acquire()     // other -> M
	after.Acquire() // M -> after
	after.Release()
	m.Release()
	other.Release()
	maxIdx := v.Stats().MaxClassIndex
	lockclass.UnregisterKey(k)
	require.Zero(t, v.Stats().Entries, "both dependencies, before and after M, are gone")
	var out strings.Builder
	require.NoError(t, v.WriteClasses(&out))
	require.Regexp(t, `FD:    1 BD:    1 \+\.\+\.: other\n\n`, out.String())
	require.Regexp(t, `FD:    1 BD:    1 \+\.\+\.: after\n\n`, out.String())
	lockclass.RegisterKey(k)
	m.Acquire()
	require.NotNil(t, task.Lookup(), "M is tracked in a fresh class")
	require.Len(t, task.Lookup().Lockdep.Held, 1)
	m.Release()
	st := v.Stats()
	require.Equal(t, 3, st.Classes)
	require.Equal(t, maxIdx, st.MaxClassIndex, "the zapped slot is reused")
	lockclass.UnregisterKey(k)
}

// lockdep_register_key warns about a key already registered
// (WARN_ON_ONCE(k == key)) and leaves it registered once.
func TestRegisteringAKeyTwiceWarns(t *testing.T) {
	krulestest.ResetDefault(t) // for a fresh WARN_ON_ONCE
	rec := krulestest.Record(t)
	k := registeredKey()
	lockclass.RegisterKey(k)
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "registered twice")
	lockclass.UnregisterKey(k)
	require.Equal(t, 1, rec.Len(), "one unregistration suffices")
}

// Every warning of lockdep_register_key and lockdep_unregister_key is a
// WARN_ON_ONCE: the first key to trip one warns, the next key tripping it
// does not, and a reset validator (a new boot) warns afresh.
func TestKeyWarningsAreOncePerValidator(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	misuse := func() {
		for _, k := range []*lockclass.Key{registeredKey(), registeredKey()} {
			lockclass.RegisterKey(k)   // registered twice
			lockclass.UnregisterKey(k) // fine
			lockclass.UnregisterKey(k) // not registered
		}
		for _, k := range []*lockclass.Key{&staticKey, &staticKeyA} {
			lockclass.RegisterKey(k) // static
			lockclass.UnregisterKey(k)
		}
	}
	want := []string{"registered twice", "was not registered", "lockdep_register_key: key ", "lockdep_unregister_key: key "}
	for range 2 {
		misuse()
		require.Len(t, rec.Reports(), len(want))
		for i, r := range rec.Reports() {
			require.Equal(t, krules.LockdepMisuse, r.Kind)
			require.Contains(t, r.Text, want[i])
		}
		require.True(t, lockclass.Default().Enabled(), "a WARN_ON_ONCE leaves lockdep on")
		lockclass.Default().Reset()
		rec.Clear()
	}
}

// look_up_lock_class warns once (WARN_ONCE) when a key's class is found
// under another name; the warning leaves validation on.
func TestKeyFoundUnderAnotherNameWarnsOnce(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	k := registeredKey()
	x := lockclass.NewMap("X", lockclass.WithValidator(v), lockclass.WithKey(k))
	y := lockclass.NewMap("Y", lockclass.WithValidator(v), lockclass.WithKey(k))
	z := lockclass.NewMap("Z", lockclass.WithValidator(v), lockclass.WithKey(k))
	x.Acquire()
	x.Release()
	require.Zero(t, rec.Len())
	y.Acquire()
	y.Release()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, `Looking for class "Y"`)
	require.Contains(t, rec.Last().Text, `a different class "X" with the same key`)
	z.Acquire()
	z.Release()
	require.Equal(t, 1, rec.Len())
	require.True(t, v.Enabled())
}

// lock_sync marks its class used but not "enabled" for irqs (mark_usage
// skips LOCK_ENABLED_* for hlock->sync): a class only ever synced on is
// uncategorized, {....}.
func TestSyncMarksTheClassUsedOnly(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	m := lockclass.NewMap("S", lockclass.WithValidator(v))
	m.Sync()
	w := lockclass.NewMap("W", lockclass.WithValidator(v))
	w.Acquire()
	w.Release()
	var out strings.Builder
	require.NoError(t, v.WriteClasses(&out))
	require.Regexp(t, ` \.\.\.\.: S\n`, out.String())
	st := v.Stats()
	require.Equal(t, 1, st.Uncategorized, "W is write-used, not uncategorized")
	require.Equal(t, 1, st.WriteUsed)
}

// ResetWithRestore runs on an empty graph with validation on, then puts
// the old graph back as it was: its classes live again, the orders it
// learnt still known, those learnt in between forgotten, and validation on
// or off as it was left.
func TestResetWithRestorePutsTheOldGraphBack(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	a, b, c := mutex(v, "A"), mutex(v, "B"), mutex(v, "C")
	nest := func(outer, inner *lockclass.Mutex) {
		outer.Lock()
		inner.Lock()
		inner.Unlock()
		outer.Unlock()
	}
	nest(a, b)
	restore := v.ResetWithRestore()
	require.Zero(t, v.Stats().Classes)
	nest(b, a) // no A -> B here
	nest(a, c)
	require.Zero(t, rec.Len())
	require.Equal(t, 3, v.Stats().Classes)
	restore()
	require.Equal(t, 2, v.Stats().Classes, "A and B, as before the reset")
	require.Equal(t, 2, v.Stats().Entries, "A -> B")
	nest(c, a) // the A -> C learnt during the reset is gone
	require.Zero(t, rec.Len())
	nest(b, a)
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds(), "A -> B is known again")
	require.False(t, v.Enabled())
	restore = v.ResetWithRestore()
	require.True(t, v.Enabled(), "the empty graph validates")
	restore()
	require.False(t, v.Enabled(), "the old graph stays off after its report")
}

// lockdep_init_map_type registers the class of a lock initialised with a
// subclass at once; lockdep_stats_show counts a class whose usage_mask is
// still 0 among the "unused locks" until the lock is taken.
func TestAClassRegisteredAtInitIsUnusedUntilTaken(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	var m lockclass.Mutex
	m.Init(lockclass.WithValidator(v), lockclass.WithKey(registeredKey()), lockclass.WithName("&n->lock"), lockclass.WithSubclass(1))
	x := lockclass.NewMap("X", lockclass.WithValidator(v), lockclass.WithSubclass(2))
	unused := func(n int) {
		t.Helper()
		st := v.Stats()
		require.Equal(t, 2, st.Classes, "both registered at init")
		require.Equal(t, n, st.Unused)
		require.Zero(t, st.Uncategorized)
		var out strings.Builder
		require.NoError(t, v.WriteStats(&out))
		require.Regexp(t, fmt.Sprintf(`(?m)^ unused locks: +%d$`, n), out.String())
	}
	unused(2)
	m.Lock()
	m.Unlock()
	unused(1)
	x.Acquire()
	x.Release()
	unused(0)
	require.Equal(t, 2, v.Stats().WriteUsed)
}

// Inside lockdep_off, lockdep_init_map_type with a subclass is
// DEBUG_LOCKS_WARN_ON(!lockdep_enabled()): a warning, debug_locks off, and
// no class registered.
func TestInitWithASubclassInsideOffWarns(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	lockclass.Off()
	lockclass.NewMap("X", lockclass.WithValidator(v), lockclass.WithSubclass(1))
	lockclass.On()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "DEBUG_LOCKS_WARN_ON(!lockdep_enabled())")
	require.False(t, v.Enabled(), "debug_locks off")
	require.Zero(t, v.Stats().Classes)
}

// A release while lockdep is off for the goroutine (lockdep_off) or of a
// lock in the no-track class is not checked (lock_release returns first),
// so releasing a lock that is not held says nothing.
func TestUnbalancedReleaseIsQuietWhenNotValidated(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	m := lockclass.NewMap("M", lockclass.WithValidator(v))
	lockclass.Off()
	m.Release()
	lockclass.On()
	n := lockclass.NewMap("N", lockclass.WithValidator(v))
	lockclass.SetNoTrackClass(n)
	n.Release()
	require.True(t, v.Enabled())
}

func TestResetDefaultRestoresTheGraph(t *testing.T) {
	var a, b lockclass.Mutex
	a.Init(lockclass.WithName("A"))
	b.Init(lockclass.WithName("B"))
	t.Run("inner", func(t *testing.T) {
		rec := krulestest.Record(t)
		krulestest.ResetDefault(t)
		a.Lock()
		b.Lock()
		b.Unlock()
		a.Unlock()
		b.Lock()
		a.Lock()
		a.Unlock()
		b.Unlock()
		require.Equal(t, 1, rec.Len())
		require.False(t, lockclass.Default().Enabled())
	})
	require.True(t, lockclass.Default().Enabled(), "the previous graph is back")
}

func TestHeldAtExitIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	m := mutex(v, "&leaked->lock")
	done := make(chan struct{})
	go func() {
		m.Lock()
		close(done) // the goroutine's last touch of its record
	}()
	<-done
	krulestest.VerifyNone(t)
	require.Equal(t, []krules.Kind{krules.LocksHeldAtExit}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "(&leaked->lock){+.+.}-{3:3}, at: ")
}

func TestSpinLockIsAnAtomicSection(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	var l lockclass.SpinLock
	l.Init(lockclass.WithValidator(v), lockclass.WithName("&zone->lock"))
	m := mutex(v, "M")
	l.Lock()
	require.True(t, nonblock.InAtomic())
	m.Lock() // sleeping under a spinlock
	m.Unlock()
	l.Unlock()
	require.False(t, nonblock.InAtomic())
	// might_sleep's BUG, then lockdep's wait-context BUG (check_wait_context).
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.InvalidWaitContext}, rec.Kinds())
	sleep := rec.Reports()[0]
	require.Regexp(t, `\nPreemption disabled at:\nlockclass_test\.TestSpinLockIsAnAtomicSection\+0x[0-9a-f]+ lockclass/lockclass_test\.go:\d+\n`, sleep.Text)
	require.Contains(t, sleep.Text, "(&zone->lock){+.+.}-{2:2}")
}

func TestRWSemSemantics(t *testing.T) {
	krulestest.Check(t)
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(lockclass.NewValidator()))
	// Readers share.
	s.RLock()
	got := make(chan bool)
	go func() { got <- s.TryRLock(); s.RUnlock() }()
	require.True(t, <-got)
	// A waiting writer keeps new readers out (writer fairness).
	wrote := make(chan struct{})
	go func() { s.Lock(); close(wrote); s.Unlock() }()
	require.Eventually(t, func() bool {
		if s.TryRLock() {
			s.RUnlock()
			return false
		}
		return true
	}, 5*time.Second, time.Millisecond)
	s.RUnlock()
	<-wrote
	// Downgrade lets queued readers in while keeping writers out.
	s.Lock()
	readers := make(chan struct{})
	go func() { s.RLock(); s.RUnlock(); close(readers) }()
	time.Sleep(5 * time.Millisecond)
	s.Downgrade()
	<-readers
	require.False(t, s.TryLock())
	s.RUnlock()
	require.True(t, s.TryLock())
	// Killable waits give up.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	errc := make(chan error)
	go func() { errc <- s.RLockKillable(ctx) }()
	require.ErrorIs(t, <-errc, context.DeadlineExceeded)
	go func() { errc <- s.LockKillable(ctx) }()
	require.ErrorIs(t, <-errc, context.DeadlineExceeded)
	s.Unlock()
	require.False(t, s.IsLocked())
	// Non-owner read release.
	s.RLockNonOwner()
	go func() { s.RUnlockNonOwner(); close(got) }()
	<-got
	require.False(t, s.IsLocked())
	require.Nil(t, task.Lookup())
}

func TestMutexKillableAndLocker(t *testing.T) {
	krulestest.Check(t)
	var m lockclass.Mutex
	var _ sync.Locker = &m
	m.Lock()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { errc <- m.LockKillable(ctx) }()
	time.Sleep(time.Millisecond)
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	m.Unlock()
	require.NoError(t, m.LockKillable(context.Background()))
	m.Unlock()
	c := sync.NewCond(&m)
	ready := false
	go func() { m.Lock(); ready = true; m.Unlock(); c.Broadcast() }()
	m.Lock()
	for !ready {
		c.Wait()
	}
	m.Unlock()
}

func TestViewsAndHandler(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	a, b := mutex(v, "A"), mutex(v, "B")
	a.Lock()
	b.Lock()
	b.Unlock()
	a.Unlock()
	srv := httptest.NewServer(lockclass.Handler(v))
	defer srv.Close()
	get := func(path string) string {
		resp, err := srv.Client().Get(srv.URL + "/debug/lockdep/" + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(body)
	}
	require.Contains(t, get(""), `href="lockdep_stats"`)
	require.Regexp(t, `^all lock classes:\n[0-9a-f]{16} FD:    2 BD:    1 \+\.\+\.: A\n -> \[[0-9a-f]{16}\] B\n`, get("lockdep"))
	require.Regexp(t, `^all lock chains:\nirq_context: 0\n\[[0-9a-f]{16}\] A\n\nirq_context: 0\n\[[0-9a-f]{16}\] A\n\[[0-9a-f]{16}\] B\n\n$`, get("lockdep_chains"))
	stats := get("lockdep_stats")
	require.Regexp(t, `(?m)^ lock-classes: +2 \[max: 8192\]$`, stats)
	require.Regexp(t, `(?m)^ direct dependencies: +2 \[max: 32768\]$`, stats)
	require.Regexp(t, `(?m)^ dependency chains: +2 \[max: 65536\]$`, stats)
	require.Regexp(t, `(?m)^ max locking depth: +2$`, stats)
	require.Regexp(t, `(?m)^ debug_locks: +1$`, stats)
	require.Regexp(t, regexp.MustCompile(`(?s)digraph lockdep \{.*c1 \[label="A"\];.*c1 -> c2 \[label="EN"\];`), get("graph.dot"))
	require.True(t, strings.HasPrefix(get("contention"), "\x1f\x8b"), "a gzipped pprof profile")
	locks := get("locks") // SysRq-d: debug_show_all_locks's frame
	require.True(t, strings.HasPrefix(locks, "\nShowing all locks held in the system:\n"), locks)
	require.True(t, strings.HasSuffix(locks, "\n=============================================\n\n"), locks)
	resp, err := srv.Client().Get(srv.URL + "/debug/lockdep/no_such_view")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 404, resp.StatusCode)
}
