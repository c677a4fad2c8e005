//go:build !krules_nolockdep

package krules_test

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// Two goroutines deadlock AB-BA; each waits on a lock the other holds.
// The detector reports both, each report listing both goroutines' locks,
// the owner of the awaited lock first; then the waits are killed
// so the test ends.
func TestHungTaskReportsAnABBADeadlockWithBothOwners(t *testing.T) {
	rec := krulestest.Record(t)
	const timeout = 100 * time.Millisecond
	krulestest.DetectHungTasksAfter(t, timeout)
	v := lockclass.NewValidator(lockclass.KeepGoing())
	var a, b lockclass.Mutex
	a.Init(lockclass.WithValidator(v), lockclass.WithName("hung_A"))
	b.Init(lockclass.WithValidator(v), lockclass.WithName("hung_B"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ids := make(chan int64, 2)
	both := make(chan struct{})
	res := make(chan error, 2)
	run := func(name string, first, second *lockclass.Mutex) {
		krules.Go(name, func() {
			first.Lock()
			ids <- krules.CurrentGoroutine().ID
			<-both
			err := second.LockKillable(ctx)
			if err == nil {
				second.Unlock()
			}
			first.Unlock()
			res <- err
		})
	}
	testID := krules.CurrentGoroutine().ID
	run("abba-1", &a, &b)
	run("abba-2", &b, &a)
	id1, id2 := <-ids, <-ids
	close(both)

	hung := func() (rs []*krules.Report) {
		for _, r := range rec.Reports() {
			if r.Kind == krules.HungTask {
				rs = append(rs, r)
			}
		}
		return rs
	}
	require.Eventually(t, func() bool { return len(hung()) == 2 }, 20*timeout+5*time.Second, time.Millisecond)
	cancel()
	// The first to give up releases its lock, which may be handed to the
	// other before it sees the kill: a grant beats the kill, as in
	// __mutex_lock_common, so at least one of them gives up.
	gaveUp := 0
	for range 2 {
		if err := <-res; err != nil {
			require.ErrorIs(t, err, context.Canceled)
			gaveUp++
		}
	}
	require.Positive(t, gaveUp)

	require.Contains(t, rec.Kinds(), krules.CircularDependency, "lockdep saw the inversion first")
	for _, r := range hung() {
		self, other := r.Goroutine.ID, id1
		if self == id1 {
			other = id2
		}
		require.Contains(t, []int64{id1, id2}, self)
		name := r.Goroutine.Name
		require.Regexp(t, `^INFO: task abba-[12]:`+strconv.FormatInt(self, 10)+` blocked for more than \d+ seconds\.$`, r.Headline)
		require.Contains(t, r.Text, "\"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\" disables this message.\n")
		// sched_show_task's line: the parent is the test, which started both.
		require.Regexp(t, `\ntask:`+name+` +state:D stack:0 +pid:`+strconv.FormatInt(self, 10)+` +tgid:1 +ppid:`+strconv.FormatInt(testID, 10)+` +flags:0x00000000\n`, r.Text)
		require.Regexp(t, `Call Trace:\n( .*\n)* lockclass\.\(\*Mutex\)\.LockKillable`, r.Text)
		// v6.12's report has no blocker line (CONFIG_DETECT_HUNG_TASK_BLOCKER
		// is v6.15's): the trace ends, then debug_show_all_locks begins.
		require.NotContains(t, r.Text, "is blocked on")
		i := strings.Index(r.Text, " </TASK>\n\nShowing all locks held in the system:\n")
		require.Positive(t, i, r.Text)
		i += len(" </TASK>\n")
		locks := r.Text[i:]
		// The owner of the awaited lock first, then the waiter itself.
		ownerAt := regexp.MustCompile(`2 locks held by abba-[12]/` + strconv.FormatInt(other, 10) + `:\n #0: [0-9a-f]{16} \(hung_[AB]\)`).FindStringIndex(locks)
		selfAt := regexp.MustCompile(`2 locks held by abba-[12]/` + strconv.FormatInt(self, 10) + `:\n #0: [0-9a-f]{16} \(hung_[AB]\)`).FindStringIndex(locks)
		require.NotNil(t, ownerAt, locks)
		require.NotNil(t, selfAt, locks)
		require.Less(t, ownerAt[0], selfAt[0])
		require.Contains(t, locks, "(hung_A)")
		require.Contains(t, locks, "(hung_B)")
		require.True(t, strings.HasSuffix(locks, "\n=============================================\n\n"))
	}
}

// ShowAllLocks prints the caller's held locks in debug_show_all_locks'
// layout.
func TestShowAllLocksListsTheCallersLocks(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	var m lockclass.Mutex
	m.Init(lockclass.WithValidator(v), lockclass.WithName("shown_lock"))
	m.Lock()
	var b strings.Builder
	require.NoError(t, krules.ShowAllLocks(&b))
	m.Unlock()
	me := krules.CurrentGoroutine()
	require.Regexp(t, `^\nShowing all locks held in the system:\n1 lock held by \S+/`+strconv.FormatInt(me.ID, 10)+
		`:\n #0: [0-9a-f]{16} \(shown_lock\)\{\+\.\+\.\}-\{3:3\}, at: .*\n\n=+\n\n$`, b.String())
}

// The detector reports a stuck waiter again each timeout, as the kernel
// does at every check that finds it still blocked, and makes at most
// hung_task_warnings (10) reports: two goroutines stuck on one mutex for
// several timeouts are each reported at least twice; twelve give ten
// reports, each about a different goroutine (the first check finds them
// all), the tenth saying that future reports are suppressed, and no more.
func TestHungTaskReportsAStuckWaiterAgainAndAtMostTen(t *testing.T) {
	t.Run("2", func(t *testing.T) {
		hungWaiters(t, 2, func(ids []int64) bool {
			n := map[int64]int{}
			for _, id := range ids {
				n[id]++
			}
			for _, c := range n {
				if c < 2 {
					return false
				}
			}
			return len(n) == 2
		}, nil)
	})
	t.Run("12", func(t *testing.T) {
		hungWaiters(t, 12, func(ids []int64) bool { return len(ids) == 10 }, func(rs []*krules.Report) {
			require.Len(t, rs, 10)
			seen := map[int64]bool{}
			for i, r := range rs {
				require.False(t, seen[r.Goroutine.ID], "goroutine %d reported twice", r.Goroutine.ID)
				seen[r.Goroutine.ID] = true
				require.Equal(t, i == 9, strings.Contains(r.Text, "\nFuture hung task reports are suppressed, see sysctl kernel.hung_task_warnings\n"), "report %d", i)
			}
		})
	})
}

// hungWaiters leaves waiters goroutines stuck on a mutex under a detector
// until enough(the ids the reports are about) holds, and four timeouts
// more; then it ends the waits and hands the reports to after.
func hungWaiters(t *testing.T, waiters int, enough func(ids []int64) bool, after func([]*krules.Report)) {
	rec := krulestest.Record(t)
	const timeout = 50 * time.Millisecond
	krulestest.DetectHungTasksAfter(t, timeout)
	var m lockclass.Mutex
	m.Init(lockclass.WithName("hung_many"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.Lock()
	res := make(chan error, waiters)
	for range waiters {
		krules.Go("stuck", func() {
			err := m.LockKillable(ctx)
			if err == nil {
				m.Unlock()
			}
			res <- err
		})
	}
	hung := func() (rs []*krules.Report, ids []int64) {
		for _, r := range rec.Reports() {
			if r.Kind == krules.HungTask {
				rs, ids = append(rs, r), append(ids, r.Goroutine.ID)
			}
		}
		return rs, ids
	}
	require.Eventually(t, func() bool { _, ids := hung(); return len(ids) > 0 && enough(ids) }, 40*timeout+5*time.Second, time.Millisecond)
	time.Sleep(4 * timeout) // four more checks at least, with every waiter still stuck
	cancel()
	for range waiters {
		require.ErrorIs(t, <-res, context.Canceled)
	}
	m.Unlock()
	if after != nil {
		rs, _ := hung()
		after(rs)
	}
}

// A timeout of 0 asks for the default, 120 s (hung_task_timeout_secs'
// CONFIG_DEFAULT_HUNG_TASK_TIMEOUT), not for a report at once: a wait of a
// few tens of milliseconds is no hung task.
func TestHungTaskDetectorTimeoutZeroIsTheDefault(t *testing.T) {
	rec := krulestest.Record(t)
	stop := krules.StartHungTaskDetector(0)
	defer stop()
	var m lockclass.Mutex
	m.Init(lockclass.WithName("briefly_held"))
	m.Lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Lock()
		m.Unlock()
	}()
	time.Sleep(50 * time.Millisecond)
	m.Unlock()
	<-done
	stop()
	require.Empty(t, rec.Reports())
}

// debug_show_all_locks lists only the tasks that hold locks: with none
// held, the frame is empty.
func TestShowAllLocksWithNothingHeld(t *testing.T) {
	krulestest.Check(t)
	for _, inSection := range []bool{false, true} {
		if inSection {
			nonblock.StartAtomic() // a task record without locks
		}
		var b strings.Builder
		require.NoError(t, krules.ShowAllLocks(&b))
		if inSection {
			nonblock.EndAtomic()
		}
		require.Equal(t, "\nShowing all locks held in the system:\n\n=============================================\n\n", b.String())
	}
}

// debug_show_all_locks prints only "INFO: lockdep is turned off." once
// debug_locks is 0, which a report on the default validator (the kernel's
// lockdep) makes it; lockdep_off() is current->lockdep_recursion, which it
// does not read, so the list survives lockclass.Off.
func TestShowAllLocksOnlySaysLockdepIsOffOnceAReportTurnedItOff(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var m lockclass.Mutex
	m.Init(lockclass.WithName("held_across"))
	m.Lock()
	defer m.Unlock()
	show := func() string {
		var b strings.Builder
		require.NoError(t, krules.ShowAllLocks(&b))
		return b.String()
	}
	require.Contains(t, show(), "\nShowing all locks held in the system:\n1 lock held by ")
	lockclass.Off()
	offList := show()
	lockclass.On()
	require.Contains(t, offList, " (held_across)", "lockdep_off leaves debug_locks alone")

	twice := lockclass.NewMap("taken_twice")
	twice.Acquire()
	twice.Acquire()
	twice.Release()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.False(t, lockclass.Default().Enabled())
	require.Equal(t, "INFO: lockdep is turned off.\n", show())
}

// The hung-task report ends with debug_show_all_locks, so once a report
// has turned the default validator off it ends with "INFO: lockdep is
// turned off." instead of a list.
func TestHungTaskReportSaysLockdepIsOffOnceAReportTurnedItOff(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	twice := lockclass.NewMap("taken_twice")
	twice.Acquire()
	twice.Acquire()
	twice.Release()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())

	const timeout = 50 * time.Millisecond
	krulestest.DetectHungTasksAfter(t, timeout)
	var m lockclass.Mutex
	m.Init(lockclass.WithName("hung_off"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.Lock()
	res := make(chan error, 1)
	krules.Go("stuck_off", func() { res <- m.LockKillable(ctx) })
	var hung *krules.Report
	require.Eventually(t, func() bool {
		for _, r := range rec.Reports() {
			if r.Kind == krules.HungTask {
				hung = r
				return true
			}
		}
		return false
	}, 40*timeout+5*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-res, context.Canceled)
	m.Unlock()
	require.True(t, strings.HasSuffix(hung.Text, " </TASK>\nINFO: lockdep is turned off.\n"), hung.Text)
	require.NotContains(t, hung.Text, "Showing all locks")
}
