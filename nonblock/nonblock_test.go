package nonblock_test

import (
	"context"
	"regexp"
	"runtime"
	rtrace "runtime/trace"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/nonblock"
)

func TestMain(m *testing.M) { krulestest.VerifyTestMain(m) }

// here returns "nonblock/nonblock_test.go:LINE" for the line after the call
// (where the checked call sits).
func here() string {
	_, file, line, _ := runtime.Caller(1)
	_ = file
	return "nonblock/nonblock_test.go:" + strconv.Itoa(line+1)
}

func goid() string { return strconv.FormatInt(krules.CurrentGoroutine().ID, 10) }

func TestMightSleepOutsideSectionsIsQuiet(t *testing.T) {
	krulestest.Check(t)
	nonblock.MightSleep()
	nonblock.MightSleepIf(true)
	nonblock.Sleep(time.Microsecond)
	nonblock.Schedule()
	nonblock.CondResched()
	require.Zero(t, task.Len())
}

func TestMightSleepInNonBlockSection(t *testing.T) {
	rec := krulestest.Record(t)
	krules.SetName("oom_reaper")
	defer krules.SetName("")
	nonblock.Start()
	site := here()
	nonblock.MightSleep()
	nonblock.End()

	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "BUG: sleeping function called from invalid context at "+site, r.Headline)
	require.Regexp(t, `^`+regexp.QuoteMeta(r.Headline+"\n"+
		"in_atomic(): 0, irqs_disabled(): 0, non_block: 1, pid: "+goid()+", name: oom_reaper\n"+
		"preempt_count: 0, expected: 0\n"+
		heldLocksLine("oom_reaper/"+goid()))+
		`CPU: - UID: \d+ PID: `+goid()+` Comm: oom_reaper (Not tainted|Tainted: G +W {9}) krules go[^\n]*\n`+
		`(Tainted: \[W\]=WARN\n)?Call Trace:\n <TASK>\n nonblock\.MightSleep\+0x[0-9a-f]+ nonblock/mightsleep\.go:\d+\n`, r.Text)
	require.Contains(t, r.Text, "nonblock_test.TestMightSleepInNonBlockSection+")
	require.NotContains(t, r.Text, "Preemption disabled at:", "preemption is on in a non-block section")
}

func TestMightSleepInAtomicSectionNamesWherePreemptionWasDisabled(t *testing.T) {
	rec := krulestest.Record(t)
	disabled := here()
	nonblock.StartAtomic()
	nonblock.StartAtomic()
	site := here()
	nonblock.MightSleep()
	nonblock.EndAtomic()
	nonblock.EndAtomic()

	r := rec.Last()
	require.Equal(t, krules.SleepInAtomic, r.Kind)
	require.Equal(t, "BUG: sleeping function called from invalid context at "+site, r.Headline)
	require.Contains(t, r.Text, "\nin_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: "+goid()+", name: TestMightSleepInAtomicSectionNamesWherePreemptionWasDisabled\n")
	require.Contains(t, r.Text, "\npreempt_count: 2, expected: 0\n")
	require.Regexp(t, `\nPreemption disabled at:\nnonblock_test\.TestMightSleepInAtomicSectionNamesWherePreemptionWasDisabled\+0x[0-9a-f]+ `+disabled+`\n`, r.Text)
	require.False(t, nonblock.InAtomic())

	// An inner section's end leaves the outermost section's site.
	disabled = here()
	nonblock.StartAtomic()
	nonblock.StartAtomic()
	nonblock.EndAtomic()
	nonblock.MightSleep()
	nonblock.EndAtomic()
	r = rec.Last()
	require.Contains(t, r.Text, "\npreempt_count: 1, expected: 0\n")
	require.Regexp(t, `\nPreemption disabled at:\nnonblock_test\.TestMightSleepInAtomicSectionNamesWherePreemptionWasDisabled\+0x[0-9a-f]+ `+disabled+`\n`, r.Text)
}

func TestSectionsNest(t *testing.T) {
	rec := krulestest.Record(t)
	nonblock.Start()
	nonblock.Start()
	require.True(t, nonblock.InNonBlock())
	nonblock.MightSleep()
	nonblock.End()
	nonblock.MightSleep()
	nonblock.End()
	nonblock.MightSleep()
	require.False(t, nonblock.InNonBlock())
	require.Equal(t, 2, rec.Len())
	require.Contains(t, rec.Reports()[0].Text, "non_block: 2,")
	require.Contains(t, rec.Reports()[1].Text, "non_block: 1,")
	require.Nil(t, task.Lookup(), "leaving the last section drops the record")
}

func TestEndWithoutStartIsReportedAndDoesNotUnderflow(t *testing.T) {
	rec := krulestest.Record(t)
	site := here()
	nonblock.End()
	require.Equal(t, []krules.Kind{krules.NonBlockImbalance}, rec.Kinds())
	r := rec.Last()
	require.Regexp(t, `^WARNING: CPU: - PID: `+goid()+` at `+site+` nonblock_test.TestEndWithoutStartIsReportedAndDoesNotUnderflow\+0x[0-9a-f]+$`, r.Headline)
	require.Contains(t, r.Text, "nonblock.End() without nonblock.Start(): non_block_count was 0\n")
	require.Contains(t, r.Text, "Call Trace:\n <TASK>\n nonblock.End+")

	nonblock.MightSleep() // still outside any section
	nonblock.Start()
	nonblock.End()
	nonblock.MightSleep()
	require.Equal(t, 1, rec.Len())
	require.Nil(t, task.Lookup())
}

// An End after the last section ended finds the goroutine's node idle: it
// is reported, as an End with no node at all is.
func TestEndAfterTheLastSectionEndedIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	nonblock.Start()
	nonblock.End()
	nonblock.End()
	require.Equal(t, []krules.Kind{krules.NonBlockImbalance}, rec.Kinds())
	nonblock.MightSleep() // the idle node reads as outside every section
	require.Equal(t, 1, rec.Len())
	require.Nil(t, task.Lookup())
}

// The section paths find the goroutine's node when another node heads its
// bucket too: inside, MightSleep reports and End ends the section.
func TestSectionsFindTheRecordBehindTheBucketHead(t *testing.T) {
	rec := krulestest.Record(t)
	nonblock.Start()
	other := task.Claim(task.ID() + 1<<40) // a node pushed ahead of ours
	nonblock.MightSleep()
	require.True(t, nonblock.InNonBlock())
	nonblock.End()
	require.False(t, nonblock.InNonBlock())
	nonblock.MightSleep()
	other.ReleaseIfEmpty()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	require.Nil(t, task.Lookup())
}

func TestEndAtomicWithoutStartIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	nonblock.EndAtomic()
	require.Equal(t, []krules.Kind{krules.NonBlockImbalance}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "preempt_count underflow")
	require.False(t, nonblock.InAtomic())
}

func TestCantSleepAssertsAtomicContext(t *testing.T) {
	rec := krulestest.Record(t)
	nonblock.StartAtomic()
	nonblock.CantSleep()
	nonblock.EndAtomic()
	require.Zero(t, rec.Len(), "atomic context is what CantSleep wants")

	nonblock.Start()
	site := here()
	nonblock.CantSleep() // non_block is not atomic, as in the kernel
	nonblock.End()
	require.Equal(t, []krules.Kind{krules.AssumeAtomic}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "BUG: assuming atomic context at "+site, r.Headline)
	require.Contains(t, r.Text, "\nin_atomic(): 0, irqs_disabled(): 0, pid: "+goid()+", name: ")
	// __cant_sleep goes from the in_atomic() line to the held locks: it
	// has no preempt_count line, unlike __might_resched.
	require.NotContains(t, r.Text, "preempt_count:")
	require.Contains(t, r.Text, "name: "+r.Goroutine.Name+"\n"+heldLocksLine(r.Goroutine.String())+"CPU: ")
}

// heldLocksLine is what __might_resched's and __cant_sleep's
// debug_show_held_locks prints for who holding nothing: lockdep's "no locks
// held by" line, or nothing with CONFIG_LOCKDEP=n (-tags krules_nolockdep),
// where it is an empty inline.
func heldLocksLine(who string) string {
	if !task.ConfigLockdep {
		return ""
	}
	return "no locks held by " + who + ".\n"
}

func TestMightReschedAcceptsTheExpectedPreemptCount(t *testing.T) {
	rec := krulestest.Record(t)
	nonblock.StartAtomic()
	nonblock.MightResched(1)
	require.Zero(t, rec.Len())
	nonblock.StartAtomic()
	nonblock.MightResched(1)
	nonblock.EndAtomic()
	nonblock.EndAtomic()
	require.Equal(t, 1, rec.Len())
	require.Contains(t, rec.Last().Text, "\npreempt_count: 2, expected: 1\n")
}

// Every sleeping helper checks before it sleeps, and the report names the
// caller of the helper.
func TestSleepingHelpersCheckFirst(t *testing.T) {
	ctx := context.Background()
	ch := make(chan int, 1)
	ch <- 1
	var q nonblock.WaitQueue
	helpers := map[string]func(){
		"Sleep":        func() { nonblock.Sleep(time.Microsecond) },
		"SleepContext": func() { _ = nonblock.SleepContext(ctx, time.Microsecond) },
		"Receive":      func() { _, _, _ = nonblock.Receive(ctx, ch) },
		"Schedule":     nonblock.Schedule,
		"CondResched":  nonblock.CondResched,
		"Wait":         func() { _ = q.Wait(ctx, func() bool { return true }) },
		"WaitTimeout":  func() { _, _ = q.WaitTimeout(ctx, func() bool { return true }, time.Millisecond) },
		"TicketSleep":  func() { _, _ = q.Prepare().Sleep(ctx, time.Microsecond) },
	}
	for name, helper := range helpers {
		t.Run(name, func(t *testing.T) {
			rec := krulestest.Record(t)
			nonblock.Start()
			helper()
			nonblock.End()
			require.NotZero(t, rec.Len())
			require.Equal(t, krules.SleepInAtomic, rec.Reports()[0].Kind)
			require.Regexp(t, `at nonblock/nonblock_test.go:\d+$`, rec.Reports()[0].Headline)
		})
	}
}

func TestSleepContextAndReceiveAreKillable(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, nonblock.SleepContext(ctx, time.Hour), context.Canceled)
	_, ok, err := nonblock.Receive(ctx, make(chan int))
	require.False(t, ok)
	require.ErrorIs(t, err, context.Canceled)
	v, ok, err := nonblock.Receive(context.Background(), func() chan int { c := make(chan int, 1); c <- 7; return c }())
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 7, v)
	closed := make(chan int)
	close(closed)
	v, ok, err = nonblock.Receive(context.Background(), closed)
	require.NoError(t, err)
	require.False(t, ok, "a closed channel's receive")
	require.Zero(t, v)
}

func TestWaitQueueWaitsForTheCondition(t *testing.T) {
	krulestest.Check(t)
	var q nonblock.WaitQueue
	var ready atomic.Bool
	done := make(chan error)
	go func() { done <- q.Wait(context.Background(), ready.Load) }()
	require.Eventually(t, q.HasSleepers, 5*time.Second, time.Millisecond)
	q.WakeUp() // spurious: the condition is still false
	ready.Store(true)
	q.WakeUp()
	require.NoError(t, <-done)
	require.False(t, q.HasSleepers())
}

func TestWaitQueueWaitIsKillableAndTimesOut(t *testing.T) {
	var q nonblock.WaitQueue
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, q.Wait(ctx, func() bool { return false }), context.DeadlineExceeded)
	ok, err := q.WaitTimeout(context.Background(), func() bool { return false }, 5*time.Millisecond)
	require.NoError(t, err)
	require.False(t, ok)
	woken, err := q.Prepare().Sleep(context.Background(), time.Millisecond)
	require.NoError(t, err)
	require.False(t, woken)
	cancelled, stop := context.WithCancel(context.Background())
	stop()
	ok, err = q.WaitTimeout(cancelled, func() bool { return false }, time.Hour)
	require.ErrorIs(t, err, context.Canceled, "wait_event_killable_timeout's -ERESTARTSYS")
	require.False(t, ok, "the condition never held")
}

// wake_up_all wakes every entry prepared before it, not only the last:
// tickets taken one after the other all see the same WakeUp.
func TestWaitQueueWakeUpWakesEveryTicket(t *testing.T) {
	krulestest.Check(t)
	var q nonblock.WaitQueue
	first, second := q.Prepare(), q.Prepare()
	require.True(t, q.HasSleepers())
	q.WakeUp()
	for _, tk := range []nonblock.Ticket{first, second} {
		woken, err := tk.Sleep(context.Background(), 5*time.Second)
		require.NoError(t, err)
		require.True(t, woken)
	}
	require.False(t, q.HasSleepers())
}

// A WakeUp between Prepare and Sleep is not lost: many waiters, a producer
// that wakes after every change, everybody finishes.
func TestWaitQueueLosesNoWakeUps(t *testing.T) {
	var q nonblock.WaitQueue
	var mu sync.Mutex
	tokens := 0
	take := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if tokens > 0 {
			tokens--
			return true
		}
		return false
	}
	const waiters, rounds = 8, 500
	var wg sync.WaitGroup
	for range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				require.NoError(t, q.Wait(context.Background(), take))
			}
		}()
	}
	for range waiters * rounds {
		mu.Lock()
		tokens++
		mu.Unlock()
		q.WakeUp()
	}
	wg.Wait()
}

// The churn test: 100k goroutines each enter and leave sections; no
// task record is left afterwards.
func TestGoroutineChurnLeavesNoTaskRecords(t *testing.T) {
	krulestest.Check(t)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for range 100_000 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			nonblock.Start()
			nonblock.StartAtomic()
			nonblock.CantSleep()
			nonblock.EndAtomic()
			nonblock.End()
		}()
	}
	wg.Wait()
	require.Zero(t, task.Len())
}

func TestNoAllocationOutsideSections(t *testing.T) {
	require.Zero(t, testing.AllocsPerRun(1000, nonblock.MightSleep))
	if rtrace.IsEnabled() {
		t.Skip("tracing is on (go test -trace): each section allocates its trace region")
	}
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		nonblock.Start()
		nonblock.End()
	}))
}

// A ticket ends once: Sleep after Finish (or Finish twice) warns and
// neither sleeps nor unbalances the queue's count of sleepers.
func TestTicketSleepAfterFinishWarns(t *testing.T) {
	rec := krulestest.Record(t)
	var q nonblock.WaitQueue
	tk := q.Prepare()
	require.True(t, q.HasSleepers())
	tk.Finish()
	require.False(t, q.HasSleepers())
	done := make(chan struct{})
	go func() {
		defer close(done)
		woken, err := tk.Sleep(context.Background(), 0) // would wait for ever
		require.NoError(t, err)
		require.False(t, woken)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		q.WakeUp()
		<-done
		t.Fatal("Sleep after Finish slept")
	}
	tk.Finish()
	require.Equal(t, []krules.Kind{krules.NonBlockImbalance, krules.NonBlockImbalance}, rec.Kinds())
	require.Contains(t, rec.Reports()[0].Text, "Sleep after Finish")
	other := q.Prepare()
	require.True(t, q.HasSleepers(), "the count is intact")
	other.Finish()
	require.False(t, q.HasSleepers())
}

// The two counters are independent, as the kernel's non_block_count and
// preempt_count are: non_block_end() without a non_block_start() warns
// even inside an atomic section, and preempt_enable() without a
// preempt_disable() inside a non-block section; neither count goes below
// zero (the documented departure from non_block_end's decrement) nor
// touches the other, and InNonBlock and InAtomic each report their own.
func TestEndOfOneKindInsideTheOtherIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	nonblock.StartAtomic()
	nonblock.End()
	require.Equal(t, []krules.Kind{krules.NonBlockImbalance}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "nonblock.End() without nonblock.Start(): non_block_count was 0\n")
	require.True(t, nonblock.InAtomic())
	require.False(t, nonblock.InNonBlock(), "an atomic section is not a non-block one")
	nonblock.MightSleep()
	require.Contains(t, rec.Last().Text, "\nin_atomic(): 1, irqs_disabled(): 0, non_block: 0, ")
	nonblock.EndAtomic()

	nonblock.Start()
	nonblock.EndAtomic()
	require.Equal(t, krules.NonBlockImbalance, rec.Last().Kind)
	require.Contains(t, rec.Last().Text, "nonblock.EndAtomic() without nonblock.StartAtomic(): preempt_count underflow\n")
	require.True(t, nonblock.InNonBlock())
	require.False(t, nonblock.InAtomic(), "a non-block section is not an atomic one")
	nonblock.MightSleep()
	require.Contains(t, rec.Last().Text, "\nin_atomic(): 0, irqs_disabled(): 0, non_block: 1, ")
	require.Contains(t, rec.Last().Text, "\npreempt_count: 0, expected: 0\n")
	nonblock.End()

	require.Equal(t, []krules.Kind{krules.NonBlockImbalance, krules.SleepInAtomic, krules.NonBlockImbalance, krules.SleepInAtomic}, rec.Kinds())
	require.Nil(t, task.Lookup(), "both counts back at zero")
}

// __might_resched (cond_resched_lock's check, MightResched here) wants
// preempt_count to equal the expected offset exactly: a count below it is
// reported as well as one above, even with no section at all (the lock the
// caller says it holds is not held), and a non-block section is reported
// whatever the count. "Preemption disabled at:" is printed only when the
// count differs from the expected one, and names no site once the last
// atomic section has ended.
func TestMightReschedWantsExactlyTheExpectedCount(t *testing.T) {
	rec := krulestest.Record(t)
	site := here()
	nonblock.MightResched(1) // no section at all
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "BUG: sleeping function called from invalid context at "+site, r.Headline)
	require.Contains(t, r.Text, "\nin_atomic(): 0, irqs_disabled(): 0, non_block: 0, pid: "+goid()+", ")
	require.Contains(t, r.Text, "\npreempt_count: 0, expected: 1\n")
	require.Contains(t, r.Text, "\nPreemption disabled at:\n0x0\n")

	nonblock.StartAtomic()
	nonblock.Start()
	nonblock.MightResched(1) // the count is right, the non-block section is not
	nonblock.End()
	nonblock.EndAtomic()
	require.Len(t, rec.Reports(), 2)
	r = rec.Last()
	require.Contains(t, r.Text, "\nin_atomic(): 1, irqs_disabled(): 0, non_block: 1, ")
	require.Contains(t, r.Text, "\npreempt_count: 1, expected: 1\n")
	require.NotContains(t, r.Text, "Preemption disabled at:", "the count is the expected one")

	nonblock.Start()
	nonblock.StartAtomic()
	nonblock.EndAtomic()
	nonblock.MightResched(1) // below the expected count, in a non-block section
	nonblock.End()
	require.Len(t, rec.Reports(), 3)
	r = rec.Last()
	require.Contains(t, r.Text, "\npreempt_count: 0, expected: 1\n")
	require.Contains(t, r.Text, "\nPreemption disabled at:\n0x0\n", "the ended atomic section's site is forgotten")
	require.Nil(t, task.Lookup())
}

// might_sleep_if checks only when its condition holds: a false one is
// quiet even in an atomic section.
func TestMightSleepIfChecksOnlyWhenTheConditionHolds(t *testing.T) {
	rec := krulestest.Record(t)
	nonblock.StartAtomic()
	nonblock.MightSleepIf(false)
	require.Zero(t, rec.Len())
	nonblock.MightSleepIf(true)
	nonblock.EndAtomic()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
}

// __might_resched wants the count exactly: one atomic section where two
// are expected, outside any non-block section, is reported too.
func TestMightReschedReportsACountBelowTheExpectedOne(t *testing.T) {
	rec := krulestest.Record(t)
	nonblock.StartAtomic()
	nonblock.MightResched(2)
	nonblock.EndAtomic()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "\npreempt_count: 1, expected: 2\n")
}

// cant_sleep outside every section, on a goroutine that has no record at
// all, is reported as on one whose sections have ended.
func TestCantSleepWithoutAnySectionIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	require.Nil(t, task.Lookup())
	site := here()
	nonblock.CantSleep()
	require.Equal(t, []krules.Kind{krules.AssumeAtomic}, rec.Kinds())
	require.Equal(t, "BUG: assuming atomic context at "+site, rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "\nin_atomic(): 0, irqs_disabled(): 0, pid: "+goid()+", ")
}

// With goroutine ids unknown to the in-place read (task.GoID returns 0:
// the start-up check failed, or another architecture), MightSleep finds
// the record the slow way and reports in either kind of section, as
// __might_sleep does whatever the build.
func TestMightSleepWithGoroutineIDsUnknown(t *testing.T) {
	rec := krulestest.Record(t)
	defer task.ForceSlowPath("test: ids unknown to the fast paths")()
	require.Zero(t, task.GoID())
	nonblock.MightSleep()
	nonblock.StartAtomic()
	nonblock.MightSleep()
	nonblock.EndAtomic()
	nonblock.Start()
	nonblock.MightSleep()
	nonblock.End()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.SleepInAtomic}, rec.Kinds())
	require.Contains(t, rec.Reports()[0].Text, "\nin_atomic(): 1, irqs_disabled(): 0, non_block: 0, ")
	require.Contains(t, rec.Reports()[1].Text, "\nin_atomic(): 0, irqs_disabled(): 0, non_block: 1, ")
	require.Nil(t, task.Lookup())
}

// wait_event_timeout() succeeds when the condition holds, even with no
// time left (___wait_cond_timeout tests the condition first and turns a
// zero timeout into 1): WaitTimeout reports true for a condition that is
// already true, whatever the timeout.
func TestWaitQueueWaitTimeoutTestsTheConditionBeforeTheTime(t *testing.T) {
	krulestest.Check(t)
	var q nonblock.WaitQueue
	for _, timeout := range []time.Duration{0, -time.Second} {
		ok, err := q.WaitTimeout(context.Background(), func() bool { return true }, timeout)
		require.NoError(t, err)
		require.True(t, ok, "timeout %v", timeout)
	}
	require.False(t, q.HasSleepers())
}

// The smallest positive timeout is a time limit, not "no limit" nor a
// poll: schedule_timeout(1) sleeps at most a tick and returns 0,
// wait_event_timeout(wq, cond, 1) gives up with the condition false after
// testing it, and succeeds with it true; wait_for_completion_timeout(x, 1)
// returns 0 with no event and consumes one that is there (returning 1);
// down_timeout(sem, 1) fails with -ETIME only when no unit is free.
func TestOneNanosecondTimeoutsExpire(t *testing.T) {
	krulestest.Check(t)
	var q nonblock.WaitQueue
	var c nonblock.Completion
	s := nonblock.NewSemaphore(0)
	ctx := context.Background()
	woken, err := q.Prepare().Sleep(ctx, time.Nanosecond)
	require.NoError(t, err)
	require.False(t, woken, "schedule_timeout(1) with nobody to wake it")
	tests := 0
	ok, err := q.WaitTimeout(ctx, func() bool { tests++; return false }, time.Nanosecond)
	require.NoError(t, err)
	require.False(t, ok)
	require.Positive(t, tests, "the condition is tested before giving up")
	ok, err = q.WaitTimeout(ctx, func() bool { return true }, time.Nanosecond)
	require.NoError(t, err)
	require.True(t, ok)
	require.Zero(t, c.WaitTimeout(time.Nanosecond), "no event")
	c.Complete()
	require.Equal(t, time.Nanosecond, c.WaitTimeout(time.Nanosecond), "an event there")
	require.False(t, c.TryWait(), "and consumed")
	require.ErrorIs(t, s.DownTimeout(time.Nanosecond), context.DeadlineExceeded)
	s.Up()
	require.NoError(t, s.DownTimeout(time.Nanosecond))
	require.False(t, s.TryDown(), "the unit was taken")
	require.False(t, q.HasSleepers())
}

// A ticket's Sleep with no timeout (0) waits for the WakeUp, as
// schedule_timeout(MAX_SCHEDULE_TIMEOUT) does, rather than timing out at
// once.
func TestTicketSleepWithoutTimeoutWaitsForTheWakeUp(t *testing.T) {
	krulestest.Check(t)
	var q nonblock.WaitQueue
	type result struct {
		woken bool
		err   error
	}
	ids, done := make(chan int64, 1), make(chan result, 1)
	go func() {
		ids <- task.ID()
		woken, err := q.Prepare().Sleep(context.Background(), 0)
		done <- result{woken, err}
	}()
	id := <-ids
	returned := make(chan struct{})
	woke := make(chan struct{})
	go func() {
		defer close(woke)
		if waitState(id, "select", returned) {
			q.WakeUp()
		}
	}()
	res := <-done
	close(returned)
	<-woke
	require.NoError(t, res.err)
	require.True(t, res.woken, "Sleep(ctx, 0) returned before the WakeUp")
	require.False(t, q.HasSleepers())
}

// A goroutine that runs library code only (one started on nonblock.End
// itself) has no caller outside krules: its warning names the library's
// own site, as a kernel thread's names the kernel function, never the
// goroutine's runtime.goexit.
func TestWarnInALibraryOnlyGoroutineNamesTheLibrarySite(t *testing.T) {
	rec := krulestest.Record(t)
	go nonblock.End()
	require.Eventually(t, func() bool { return rec.Len() > 0 }, 5*time.Second, time.Millisecond)
	require.Equal(t, []krules.Kind{krules.NonBlockImbalance}, rec.Kinds())
	require.Regexp(t, `^WARNING: CPU: - PID: \d+ at nonblock/section\.go:\d+ nonblock\.End\+0x[0-9a-f]+$`, rec.Last().Headline)
}
