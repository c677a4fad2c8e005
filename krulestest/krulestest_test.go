package krulestest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mempool"
)

func TestMain(m *testing.M) { krulestest.VerifyTestMain(m, krulestest.MempoolDebug()) }

// VerifyNone lets goleak wait for the test's goroutines before it looks for
// the ones that returned holding locks: a goroutine still on its way out
// when the test ends is reported, not missed.
func TestVerifyNoneWaitsBeforeLookingForExitedGoroutines(t *testing.T) {
	if !lockclass.IsEnabled() {
		t.Skip("lockdep compiled out")
	}
	rec := krulestest.Record(t)
	var mu lockclass.Mutex
	locked := make(chan struct{})
	go func() {
		mu.Lock()
		close(locked)
		time.Sleep(50 * time.Millisecond) // still running when VerifyNone starts
	}()
	<-locked
	krulestest.VerifyNone(t)
	require.Equal(t, []krules.Kind{krules.LocksHeldAtExit}, rec.Kinds())
	require.Regexp(t, `^WARNING: \S+/\d+ still has locks held!$`, rec.Last().Headline)
}

func TestRecorderKeepsWhatTheTestProvokes(t *testing.T) {
	rec := krulestest.Record(t)
	require.Nil(t, rec.Last())
	krules.Emit(krules.Warn(krules.MempoolMisuse, "x", 0))
	krules.Emit(krules.Warn(krules.NotifierMisuse, "y", 0))
	require.Equal(t, 2, rec.Len())
	require.Equal(t, []krules.Kind{krules.MempoolMisuse, krules.NotifierMisuse}, rec.Kinds())
	require.Equal(t, krules.NotifierMisuse, rec.Last().Kind)
	rec.Clear()
	require.Zero(t, rec.Len())
}

// fakeTB is a test whose failures and cleanups we want to see.
type fakeTB struct {
	testing.TB
	errors   []string
	cleanups []func()
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, a ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, a...))
}
func (f *fakeTB) Error(a ...any)    { f.errors = append(f.errors, fmt.Sprint(a...)) }
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

func (f *fakeTB) end() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// Check fails the test with the report's text.
func TestCheckFailsTheTestOnAReport(t *testing.T) {
	tb := &fakeTB{TB: t}
	krulestest.Check(tb)
	krules.Emit(krules.Warn(krules.MempoolMisuse, "misuse seen by Check", 0))
	tb.end()
	require.Len(t, tb.errors, 1)
	require.Contains(t, tb.errors[0], "krules: mempool-misuse report:\n------------[ cut here ]------------\nmisuse seen by Check\n")
}

// When a test under Check ends, a goroutine it started that returned
// holding a lock is reported to it, and fails it.
func TestCheckFailsTheTestOnLocksLeftByAReturnedGoroutine(t *testing.T) {
	if !lockclass.IsEnabled() {
		t.Skip("lockdep compiled out")
	}
	tb := &fakeTB{TB: t}
	krulestest.Check(tb)
	var mu lockclass.Mutex
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		mu.Lock()
	}()
	<-exited
	goleak.VerifyNone(t) // gone, not on its way out
	tb.end()
	require.Len(t, tb.errors, 1)
	require.Regexp(t, `^krules: locks-held-at-exit report:\n`, tb.errors[0])
	require.Contains(t, tb.errors[0], " still has locks held!\n")
}

// LeakOptions reach goleak: a goroutine they say to ignore is no leak.
func TestLeakOptionsReachGoleak(t *testing.T) {
	tb := &fakeTB{TB: t}
	stop := make(chan struct{})
	defer close(stop)
	go func() { <-stop }()
	krulestest.VerifyNone(tb, krulestest.LeakOptions(goleak.IgnoreCurrent()))
	require.Empty(t, tb.errors)
}

func TestResetDefaultPutsTheOldGraphBack(t *testing.T) {
	if !lockclass.IsEnabled() {
		t.Skip("lockdep compiled out")
	}
	var before, during int
	t.Run("reset", func(t *testing.T) {
		var a lockclass.Mutex
		a.Lock()
		a.Unlock()
		before = lockclass.Default().Stats().Classes
		krulestest.ResetDefault(t)
		during = lockclass.Default().Stats().Classes
	})
	require.Positive(t, before)
	require.Zero(t, during, "the test ran on an empty default validator")
	require.Equal(t, before, lockclass.Default().Stats().Classes, "and the old one is back")
}

// MempoolDebug turns mempool's debug mode on for the binary: a pool made
// without WithDebug reports a foreign Free.
func TestMempoolDebugIsOnForTheBinary(t *testing.T) {
	require.True(t, mempool.SetDefaultDebug(true), "VerifyTestMain(m, MempoolDebug()) set it")
}

func TestDetectHungTasksFiresBeforeTheTestDeadline(t *testing.T) {
	require.False(t, task.Tracking(), "no detector yet")
	timeout := krulestest.DetectHungTasks(t)
	require.True(t, task.Tracking(), "a detector runs: waits are recorded")
	require.Positive(t, timeout)
	require.LessOrEqual(t, timeout, krules.DefaultHungTaskTimeout)
	if d, ok := t.Deadline(); ok {
		require.Less(t, timeout, time.Until(d), "reported before go test -timeout kills the binary")
	}
}

// CaptureLog takes krules' informational lines for the test, and gives the
// output back when the test ends.
func TestCaptureLogTakesTheLinesAndGivesTheOutputBack(t *testing.T) {
	var inner *krulestest.Log
	t.Run("capture", func(t *testing.T) {
		inner = krulestest.CaptureLog(t)
		krules.Logf("oom_reaper: unable to reap pid:%d (%s)", 42, "victim")
		require.Equal(t, "oom_reaper: unable to reap pid:42 (victim)\n", inner.String())
	})
	outer := krulestest.CaptureLog(t)
	krules.Logf("after")
	require.Equal(t, "oom_reaper: unable to reap pid:42 (victim)\n", inner.String(), "the capture ended with its test")
	require.Equal(t, "after\n", outer.String())
}
