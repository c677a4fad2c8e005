package nonblock_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	rtrace "runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/internal/lineage"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
	"github.com/krules/krules/nonblock"
)

// lineAfter returns "nonblock/tracecheck_test.go:N" for the line after the
// call: where a section is entered.
func lineAfter() string {
	_, _, line, _ := runtime.Caller(1)
	return "nonblock/tracecheck_test.go:" + strconv.Itoa(line+1)
}

// waitState waits until goroutine id is parked in the given state, as
// runtime.Stack prints it ("chan receive", "sync.Mutex.Lock", "IO wait", ...),
// so that a test knows the goroutine really blocked before it wakes it. It
// gives up, returning false, once stop is closed.
func waitState(id int64, state string, stop <-chan struct{}) bool {
	prefix := []byte(fmt.Sprintf("goroutine %d [%s", id, state))
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		for _, line := range bytes.Split(buf[:n], []byte("\n")) {
			if bytes.HasPrefix(line, prefix) {
				return true
			}
		}
		select {
		case <-stop:
			return false
		case <-time.After(200 * time.Microsecond):
		}
	}
}

// blockInSection enters a non-block section on the calling goroutine, runs
// block, which blocks until wake runs (or by itself, like a sleep), and
// leaves the section. wake runs on a helper goroutine once the caller is
// parked in state. It returns the section's entry site.
func blockInSection(state string, block, wake func()) (site string) {
	me := task.ID()
	done, returned := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		if waitState(me, state, returned) {
			wake()
		}
	}()
	site = lineAfter()
	nonblock.Start()
	block()
	nonblock.End()
	close(returned)
	<-done
	return site
}

func headlineRE(name string, id int64, depth string) string {
	return `^BUG: scheduling in a non-blocking section: ` + regexp.QuoteMeta(name) + `/` + strconv.FormatInt(id, 10) + `/` + depth + `$`
}

type blockCase struct {
	name   string
	state  string // runtime.Stack's wait state while blocked
	reason string // what the report says it blocked on (a regexp)
	frame  string // a frame the blocking stack must show
	setup  func(t *testing.T) (block, wake func())
}

var blockCases = []blockCase{
	{"chan receive", "chan receive", `chan receive`, "runtime.chanrecv1", func(*testing.T) (func(), func()) {
		ch := make(chan int)
		return func() { <-ch }, func() { ch <- 1 }
	}},
	{"chan send", "chan send", `chan send`, "runtime.chansend1", func(*testing.T) (func(), func()) {
		ch := make(chan int)
		return func() { ch <- 1 }, func() { <-ch }
	}},
	{"select", "select", `select`, "runtime.selectgo", func(*testing.T) (func(), func()) {
		a, b := make(chan int), make(chan int)
		return func() {
			select {
			case <-a:
			case <-b:
			}
		}, func() { a <- 1 }
	}},
	{"contended sync.Mutex", "sync.Mutex.Lock", `sync`, "sync.(*Mutex).Lock", func(*testing.T) (func(), func()) {
		var mu sync.Mutex
		mu.Lock() // held until wake: Lock in the section must park
		return func() { mu.Lock(); mu.Unlock() }, mu.Unlock
	}},
	{"sync.Cond.Wait", "sync.Cond.Wait", regexp.QuoteMeta(`sync.(*Cond).Wait`), "sync.(*Cond).Wait", func(*testing.T) (func(), func()) {
		var mu sync.Mutex
		cond := sync.NewCond(&mu)
		ready := false
		return func() {
				mu.Lock()
				for !ready {
					cond.Wait()
				}
				mu.Unlock()
			}, func() {
				mu.Lock()
				ready = true
				mu.Unlock()
				cond.Signal() // after Unlock, so the waiter does not then wait for mu
			}
	}},
	{"time.Sleep", "sleep", `sleep`, "time.Sleep", func(*testing.T) (func(), func()) {
		return func() { time.Sleep(3 * time.Millisecond) }, func() {}
	}},
	{"loopback TCP read", "IO wait", `network`, "net.(*conn).Read", func(t *testing.T) (func(), func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				accepted <- c
			}
			close(accepted)
		}()
		client, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { client.Close() })
		server := <-accepted
		require.NotNil(t, server)
		t.Cleanup(func() { server.Close() })
		return func() {
			var b [1]byte
			_, _ = client.Read(b[:])
		}, func() { _, _ = server.Write([]byte("x")) }
	}},
	{"blocking read(2) on a pipe", "syscall", `syscall \(lost its P; \d+(\.\d+)?ms in the system call\)`, "syscall.Read", func(t *testing.T) (func(), func()) {
		var p [2]int
		require.NoError(t, syscall.Pipe(p[:])) // blocking fds, outside the netpoller
		t.Cleanup(func() { syscall.Close(p[0]); syscall.Close(p[1]) })
		return func() {
				var b [1]byte
				_, _ = syscall.Read(p[0], b[:])
			}, func() {
				time.Sleep(30 * time.Millisecond) // long enough for the scheduler to take the P
				_, _ = syscall.Write(p[1], []byte("x"))
			}
	}},
}

// Every way Go code blocks is caught inside a non-block section, with the
// kernel's headline, the reason, the entry site and the blocking stack. The
// cases run in parallel, sharing one flight recorder; each gets its own
// report only.
func TestTraceCatchesEveryWayToBlock(t *testing.T) {
	for _, bc := range blockCases {
		t.Run(bc.name, func(t *testing.T) {
			t.Parallel()
			rec := krulestest.Record(t)
			tc := krulestest.TraceCheck(t, nonblock.IgnoreAllocBlocks())
			block, wake := bc.setup(t)
			site := blockInSection(bc.state, block, wake)
			require.NoError(t, tc.Flush())

			require.Equal(t, []krules.Kind{krules.ScheduleInNonBlock}, rec.Kinds())
			r := rec.Last()
			me := krules.CurrentGoroutine()
			require.Equal(t, me, r.Goroutine)
			require.Regexp(t, headlineRE(me.Name, me.ID, "1"), r.Headline)
			require.Regexp(t, `^`+regexp.QuoteMeta(r.Headline)+`\nblocked on: `+bc.reason+`\n`+
				`Non-block section entered at:\nnonblock_test\.blockInSection\+0x[0-9a-f]+ `+regexp.QuoteMeta(site)+`\n`+
				`CPU: - UID: \d+ PID: `+strconv.FormatInt(me.ID, 10)+` Comm: `+regexp.QuoteMeta(me.Name)+` .*\n(Tainted: \[W\]=WARN\n)?Call Trace:\n <TASK>\n`, r.Text)
			require.Contains(t, r.Text, "\n "+bc.frame+"+")
			require.Contains(t, r.StackText(), "nonblock_test.blockInSection+", "the report's Stack is the blocking stack")
		})
	}
}

// A named goroutine is reported by its name, and a block in a nested
// section shows the nesting depth and the outermost entry.
func TestTraceReportNamesGoroutineAndDepth(t *testing.T) {
	rec := krulestest.Record(t)
	tc := krulestest.TraceCheck(t, nonblock.IgnoreAllocBlocks())
	var id int64
	var site string
	done := make(chan struct{})
	krules.Go("oom_reaper", func() {
		defer close(done)
		id = task.ID()
		site = lineAfter()
		nonblock.Start()
		nonblock.Start()
		nonblock.Start()
		time.Sleep(time.Millisecond)
		nonblock.End()
		nonblock.End()
		nonblock.End()
	})
	<-done
	require.NoError(t, tc.Flush())
	require.Equal(t, []krules.Kind{krules.ScheduleInNonBlock}, rec.Kinds())
	r := rec.Last()
	require.Regexp(t, headlineRE("oom_reaper", id, "3"), r.Headline)
	require.Equal(t, krules.Goroutine{ID: id, Name: "oom_reaper"}, r.Goroutine)
	require.Regexp(t, `\nNon-block section entered at:\nnonblock_test\.TestTraceReportNamesGoroutineAndDepth\.func1\+0x[0-9a-f]+ `+regexp.QuoteMeta(site)+`\n`, r.Text)
	require.NotContains(t, r.Text, "Modules linked in:", "schedule_debug's non-block branch calls no print_modules")
	require.Regexp(t, `\nCPU: - UID: \d+ PID: `+strconv.FormatInt(id, 10)+` Comm: oom_reaper `, r.Text)
}

// An atomic section is checked too, with the kernel's own headline for it
// (__schedule_bug): preempt_count in hex, and "Preemption disabled at:". A
// goroutine in both kinds of section gets both reports, non-block first, as
// schedule_debug prints them.
func TestTraceCatchesSchedulingWhileAtomic(t *testing.T) {
	rec := krulestest.Record(t)
	tc := krulestest.TraceCheck(t, nonblock.IgnoreAllocBlocks())
	me := krules.CurrentGoroutine()

	atomicSite := lineAfter()
	nonblock.StartAtomic()
	time.Sleep(time.Millisecond)
	nonblock.StartAtomic()
	nbSite := lineAfter()
	nonblock.Start()
	time.Sleep(2 * time.Millisecond)
	nonblock.End()
	nonblock.EndAtomic()
	nonblock.EndAtomic()
	require.NoError(t, tc.Flush())

	reports := rec.Reports()
	require.Len(t, reports, 3)
	for _, r := range reports {
		require.Equal(t, krules.ScheduleInNonBlock, r.Kind)
	}
	require.Equal(t, "BUG: scheduling while atomic: "+me.String()+"/0x00000001", reports[0].Headline)
	require.Regexp(t, `\nblocked on: sleep\nModules linked in:\nPreemption disabled at:\nnonblock_test\.TestTraceCatchesSchedulingWhileAtomic\+0x[0-9a-f]+ `+regexp.QuoteMeta(atomicSite)+`\n`, reports[0].Text)
	require.Equal(t, "BUG: scheduling in a non-blocking section: "+me.String()+"/1", reports[1].Headline)
	require.Regexp(t, `\nNon-block section entered at:\nnonblock_test\.TestTraceCatchesSchedulingWhileAtomic\+0x[0-9a-f]+ `+regexp.QuoteMeta(nbSite)+`\n`, reports[1].Text)
	require.Equal(t, "BUG: scheduling while atomic: "+me.String()+"/0x00000002", reports[2].Headline)
	require.Regexp(t, `\nPreemption disabled at:\nnonblock_test\.TestTraceCatchesSchedulingWhileAtomic\+0x[0-9a-f]+ `+regexp.QuoteMeta(atomicSite)+`\n`, reports[2].Text)
}

// The kernel's counters are independent, so sections of the two kinds may
// end out of order; the trace must stay readable and still tell which
// section is open, entered where.
func TestTraceFollowsInterleavedSections(t *testing.T) {
	rec := krulestest.Record(t)
	tc := krulestest.TraceCheck(t, nonblock.IgnoreAllocBlocks())
	me := krules.CurrentGoroutine()
	nonblock.Start()
	atomicSite := lineAfter()
	nonblock.StartAtomic()
	nonblock.End() // the atomic section, entered later, stays open
	time.Sleep(time.Millisecond)
	nonblock.EndAtomic()
	time.Sleep(time.Millisecond) // outside every section
	require.NoError(t, tc.Flush())

	require.Equal(t, []krules.Kind{krules.ScheduleInNonBlock}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "BUG: scheduling while atomic: "+me.String()+"/0x00000001", r.Headline)
	require.Regexp(t, `\nModules linked in:\nPreemption disabled at:\nnonblock_test\.TestTraceFollowsInterleavedSections\+0x[0-9a-f]+ `+regexp.QuoteMeta(atomicSite)+`\n`, r.Text)
	require.Nil(t, task.Lookup(), "no record, no region left behind")
}

// A goroutine started inside a section is not in it, as in the kernel, where
// deferred work may sleep.
func TestTraceDoesNotBlameGoroutinesStartedInASection(t *testing.T) {
	krulestest.Check(t)
	tc := krulestest.TraceCheck(t)
	done := make(chan struct{})
	nonblock.Start()
	go func() {
		defer close(done)
		time.Sleep(2 * time.Millisecond)
		ch := make(chan int)
		go func() { ch <- 1 }()
		<-ch
	}()
	nonblock.End()
	<-done
	require.NoError(t, tc.Flush())
}

// A section belongs to the goroutine that entered it. An End on another
// goroutine is a misuse, reported at the End; it ends nothing, so what that
// goroutine does afterwards is not blamed on the section, while the goroutine
// that entered the section is still in it (for the might-sleep checks and
// the trace alike) until it ends it itself.
func TestTraceSectionEndedOnAnotherGoroutine(t *testing.T) {
	rec := krulestest.Record(t)
	tc := krulestest.TraceCheck(t, nonblock.IgnoreAllocBlocks())
	me := krules.CurrentGoroutine()
	nonblock.Start()
	var other atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		id := task.ID()
		nonblock.End() // not this goroutine's section
		other.Store(id)
		time.Sleep(2 * time.Millisecond) // not in any section
	}()
	for other.Load() == 0 {
		runtime.Gosched() // a yield, not a block
	}
	require.True(t, nonblock.InNonBlock(), "the End on the other goroutine ended nothing")
	time.Sleep(2 * time.Millisecond) // still in the section
	nonblock.End()
	<-done
	require.NoError(t, tc.Flush())

	require.Equal(t, []krules.Kind{krules.NonBlockImbalance, krules.ScheduleInNonBlock}, rec.Kinds())
	warn := rec.Reports()[0]
	require.Equal(t, other.Load(), warn.Goroutine.ID)
	require.Contains(t, warn.Text, "nonblock.End() without nonblock.Start(): non_block_count was 0\n")
	bug := rec.Reports()[1]
	require.Equal(t, me, bug.Goroutine, "only the goroutine that entered the section is blamed")
	require.Regexp(t, headlineRE(me.Name, me.ID, "1"), bug.Headline)
	require.Nil(t, task.Lookup())
}

// Preemption, yields and system calls that return at once are not blocks.
func TestTraceIgnoresWhatDoesNotBlock(t *testing.T) {
	rec := krulestest.Record(t)
	tc := krulestest.TraceCheck(t, nonblock.IgnoreAllocBlocks())
	f, err := os.CreateTemp(t.TempDir(), "fast")
	require.NoError(t, err)
	defer f.Close()
	ch := make(chan int, 1)
	var mu sync.Mutex

	nonblock.Start()
	spin(50 * time.Millisecond) // preempted many times
	for range 100 {
		runtime.Gosched()
	}
	for range 100 {
		_ = os.Getpid()
		_, err = f.Write([]byte("a small write\n"))
	}
	ch <- 1 // ready channel operations and an uncontended lock never park
	<-ch
	mu.Lock()
	mu.Unlock()
	nonblock.End()
	require.NoError(t, err)
	require.NoError(t, tc.Flush())
	require.Empty(t, rec.Reports())
}

//go:noinline
func spin(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
	}
}

// Allocation can make the runtime block a goroutine (GC assist, starting a
// GC cycle). Such blocks are classified as AllocBlockInNonBlock, never as
// ScheduleInNonBlock. Whether one happens is up to the garbage collector, so
// the test asserts the classification of those that do.
func TestTraceClassifiesBlocksInTheAllocator(t *testing.T) {
	rec := krulestest.Record(t)
	tc := krulestest.TraceCheck(t)
	defer debug.SetGCPercent(debug.SetGCPercent(1))
	var keep [][]byte
	nonblock.Start()
	for i := range 50_000 {
		keep = append(keep, make([]byte, 512))
		if i%1000 == 0 {
			keep = keep[:0]
		}
	}
	nonblock.End()
	require.NoError(t, tc.Flush())
	for _, r := range rec.Reports() {
		require.Equal(t, krules.AllocBlockInNonBlock, r.Kind, r.Text)
		require.Regexp(t, `^BUG: scheduling in a non-blocking section: \S+/\d+/1$`, r.Headline)
		require.Contains(t, r.Text, "\nthe Go runtime blocked the goroutine while it allocated: allocation may sleep in Go\n")
		require.Regexp(t, `runtime\.(mallocgc|gcAssistAlloc|gcStart)|blocked on: GC mark assist wait for work`, r.Text)
	}
	t.Logf("%d allocation blocks found", rec.Len())
}

// Sections already open when checking starts have no region: the trace
// cannot see them until a nested section is entered, which then reports the
// true depth, and says the outermost entry is not in the trace.
func TestTraceSeesSectionsOpenedBeforeItStartedOnlyWhenReentered(t *testing.T) {
	if rtrace.IsEnabled() {
		t.Skip("tracing is already on (go test -trace): every section has a region")
	}
	rec := krulestest.Record(t)
	nonblock.Start()
	tc := krulestest.TraceCheck(t, nonblock.IgnoreAllocBlocks())
	time.Sleep(time.Millisecond) // unseen
	inner := lineAfter()
	nonblock.Start()
	time.Sleep(time.Millisecond)
	nonblock.End()
	nonblock.End()
	require.NoError(t, tc.Flush())

	require.Equal(t, []krules.Kind{krules.ScheduleInNonBlock}, rec.Kinds())
	r := rec.Last()
	me := krules.CurrentGoroutine()
	require.Regexp(t, headlineRE(me.Name, me.ID, "2"), r.Headline)
	require.Regexp(t, `\nNon-block section entered at:\n0x0\n\(entered before tracing began; innermost traced entry at nonblock_test\.TestTraceSeesSectionsOpenedBeforeItStartedOnlyWhenReentered\+0x[0-9a-f]+ `+regexp.QuoteMeta(inner)+`\)\n`, r.Text)
}

// Ending a non-block section entered before tracing began, which has no
// region, leaves alone the region of the atomic section entered after it
// at the same depth: a block in that atomic section is still caught.
func TestTraceEndOfAnUntracedSectionKeepsTheOtherKindsRegion(t *testing.T) {
	if rtrace.IsEnabled() {
		t.Skip("tracing is already on (go test -trace): every section has a region")
	}
	rec := krulestest.Record(t)
	nonblock.Start()
	tc := krulestest.TraceCheck(t, nonblock.IgnoreAllocBlocks())
	me := krules.CurrentGoroutine()
	nonblock.StartAtomic()
	nonblock.End()
	time.Sleep(time.Millisecond)
	nonblock.EndAtomic()
	require.NoError(t, tc.Flush())

	require.Equal(t, []krules.Kind{krules.ScheduleInNonBlock}, rec.Kinds())
	require.Equal(t, "BUG: scheduling while atomic: "+me.String()+"/0x00000001", rec.Last().Headline)
}

// Parallel tests share the recorder; a finding on a goroutine that has
// returned by the time of the snapshot still goes to the test that started
// it, and only to that test.
func TestTraceAttributesFindingsOfReturnedGoroutines(t *testing.T) {
	t.Run("group", func(t *testing.T) { attributeInParallel(t) })
}

func attributeInParallel(t *testing.T) {
	for i := range 4 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			rec := krulestest.Record(t)
			tc := krulestest.TraceCheck(t, nonblock.IgnoreAllocBlocks())
			var id, child int64
			done := make(chan struct{})
			go func() {
				child = task.ID()
				go func() { // a grandchild, to walk more than one hop
					defer close(done)
					id = task.ID()
					nonblock.Start()
					time.Sleep(time.Duration(i+1) * time.Millisecond)
					nonblock.End()
				}()
			}()
			<-done
			for lineageLive(id) {
				time.Sleep(100 * time.Microsecond)
			}
			require.NoError(t, tc.Stop())

			require.Equal(t, []krules.Kind{krules.ScheduleInNonBlock}, rec.Kinds())
			require.Equal(t, id, rec.Last().Goroutine.ID)
			require.Equal(t, "attributeInParallel.func1.1.1", rec.Last().Goroutine.Name)
			require.Equal(t, []int64{child, task.ID()}, rec.Last().Lineage, "the report carries the parents the trace told")
		})
	}
}

func lineageLive(id int64) bool {
	_, ok := lineage.Live()[id]
	return ok
}

// fakeTB stands for a test whose failures we want to see.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	errors   []string
	cleanups []func()
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Fatalf(format string, args ...any) { f.Errorf(format, args...); runtime.Goexit() }
func (f *fakeTB) Cleanup(fn func())                 { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// Without Record or Check, a finding fails the test that owns it, with the
// report's text, when the test ends.
func TestTraceCheckFailsTheTestOnAFinding(t *testing.T) {
	tb := &fakeTB{TB: t}
	krulestest.TraceCheck(tb)
	nonblock.Start()
	time.Sleep(time.Millisecond)
	nonblock.End()
	tb.runCleanups()
	require.Len(t, tb.errors, 1)
	require.Regexp(t, `^krules: schedule-in-non-block report:\nBUG: scheduling in a non-blocking section: TestTraceCheckFailsTheTestOnAFinding/\d+/1\nblocked on: sleep\n`, tb.errors[0])
}

// The checker coexists with `go test -trace` (trace.Start), and refuses to
// share the runtime's one flight recorder with someone else's.
func TestTraceCheckCoexistsWithTraceStartButNotAnotherFlightRecorder(t *testing.T) {
	if !rtrace.IsEnabled() {
		require.NoError(t, rtrace.Start(io.Discard))
		defer rtrace.Stop()
	}
	rec := krulestest.Record(t)
	tc := krulestest.TraceCheck(t, nonblock.IgnoreAllocBlocks())
	nonblock.Start()
	time.Sleep(time.Millisecond)
	nonblock.End()
	require.NoError(t, tc.Stop())
	require.Equal(t, []krules.Kind{krules.ScheduleInNonBlock}, rec.Kinds())
	require.NoError(t, tc.Stop(), "Stop is idempotent")
	require.Error(t, tc.Flush())

	fr := rtrace.NewFlightRecorder(rtrace.FlightRecorderConfig{})
	require.NoError(t, fr.Start())
	defer fr.Stop()
	_, err := nonblock.StartTraceCheck()
	require.ErrorContains(t, err, "flight recorder already enabled")
}

// The syscall threshold decides how long a system call that lost its P must
// last to count; IgnoreAllocBlocks is per checker.
func TestTraceSyscallThreshold(t *testing.T) {
	rec := krulestest.Record(t)
	tc := krulestest.TraceCheck(t, nonblock.SyscallThreshold(time.Second), nonblock.IgnoreAllocBlocks())
	block, wake := blockCases[len(blockCases)-1].setup(t)
	blockInSection("syscall", block, wake)
	require.NoError(t, tc.Flush())
	require.Empty(t, rec.Reports(), "a 30ms syscall is below a 1s threshold")
}

func TestTraceRegionsAreOnlyKeptWhileTracing(t *testing.T) {
	if rtrace.IsEnabled() {
		t.Skip("tracing is already on (go test -trace)")
	}
	nonblock.Start()
	require.Empty(t, task.Lookup().Regions, "tracing off: no region")
	nonblock.End()
	tc := krulestest.TraceCheck(t)
	nonblock.Start()
	nonblock.StartAtomic()
	require.Len(t, task.Lookup().Regions, 2)
	nonblock.End()
	require.Len(t, task.Lookup().Regions, 1)
	require.True(t, task.Lookup().Regions[0].Atomic)
	nonblock.EndAtomic()
	require.Nil(t, task.Lookup())
	require.NoError(t, tc.Stop())
	require.False(t, rtrace.IsEnabled(), "the last checker stops the recorder")
	require.Equal(t, 0, strings.Count("", "x"))
}

// sleepyNotifier sleeps in its callback with time.Sleep, which no
// might-sleep check sees: only the trace shows it blocked.
type sleepyNotifier struct{}

func (sleepyNotifier) InvalidateRangeStart(*mmnotifier.Range) error {
	time.Sleep(time.Millisecond)
	return nil
}

// When krules itself entered the section (the OOM reaper runs non-blockable
// notifier callbacks inside one), the report names the library frame that
// entered it rather than printing 0x0.
func TestTraceNamesTheLibraryFrameThatEnteredTheSection(t *testing.T) {
	rec := krulestest.Record(t)
	tc := krulestest.TraceCheck(t, nonblock.IgnoreAllocBlocks())
	z, err := gfp.NewZone(4<<20, gfp.WithoutKswapd())
	require.NoError(t, err)
	defer func() { require.NoError(t, z.Close()) }()
	mm := mmnotifier.NewMM(mmnotifier.WithZone(z))
	defer mm.Exit()
	_, err = mmnotifier.Register(mm, sleepyNotifier{})
	require.NoError(t, err)
	addr, err := mm.Mmap(mmnotifier.PageSize, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	_, err = mm.Fault(addr, true)
	require.NoError(t, err)
	mm.OOMReap(context.Background())
	require.NoError(t, tc.Flush())

	var found []*krules.Report
	for _, r := range rec.Reports() {
		if r.Kind == krules.ScheduleInNonBlock {
			found = append(found, r)
		}
	}
	require.NotEmpty(t, found, "the callback's sleep is in the trace")
	for _, r := range found {
		require.Regexp(t, `\nNon-block section entered at:\nmmnotifier\.\S+\+0x[0-9a-f]+ mmnotifier/invalidate\.go:\d+\n`, r.Text)
	}
}

// The same block repeated in one section (same reason, same stack) is
// reported once, saying how many times it happened.
func TestTraceReportsARepeatedBlockOnceWithItsCount(t *testing.T) {
	rec := krulestest.Record(t)
	tc := krulestest.TraceCheck(t, nonblock.IgnoreAllocBlocks())
	nonblock.Start()
	for range 2 {
		time.Sleep(time.Millisecond)
	}
	nonblock.End()
	require.NoError(t, tc.Flush())
	require.Equal(t, []krules.Kind{krules.ScheduleInNonBlock}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "\nblocked on: sleep\n(the same block 2 times in this section)\nNon-block section entered at:\n")
}

// The garbage collector stops a running goroutine to scan its stack (the
// trace's "preempted" wait). That is a preemption, not the goroutine
// blocking, and schedule_debug's check skips preemptions: a goroutine
// spinning in a section while collections run is not reported.
func TestTraceIgnoresTheCollectorStoppingAGoroutineToScanIt(t *testing.T) {
	rec := krulestest.Record(t)
	tc := krulestest.TraceCheck(t, nonblock.IgnoreAllocBlocks())
	stop, collected := make(chan struct{}), make(chan struct{})
	var cycles atomic.Int32
	go func() {
		defer close(collected)
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
				cycles.Add(1)
			}
		}
	}()
	nonblock.Start()
	for end := time.Now().Add(5 * time.Second); cycles.Load() < 20 && time.Now().Before(end); {
		spin(time.Millisecond) // running, never blocking, while the collector scans
	}
	nonblock.End()
	close(stop)
	<-collected
	require.NoError(t, tc.Flush())
	require.Empty(t, rec.Reports())
}

// sameBlockCount returns how many blocks a report stands for: one, or the
// count its "(the same block N times in this section)" line gives.
func sameBlockCount(t *testing.T, r *krules.Report) int {
	m := regexp.MustCompile(`\n\(the same block (\d+) times in this section\)\n`).FindStringSubmatch(r.Text)
	if m == nil {
		return 1
	}
	n, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	return n
}

// A system call that returns with its processor did not block, even when
// every system call that lost its P is reported (SyscallThreshold(0)): a
// run of fast writes in a section gives no report, bar the rare one the
// scheduler really took the processor from.
func TestTraceSyscallsThatKeepTheirProcessorAreNotBlocks(t *testing.T) {
	rec := krulestest.Record(t)
	tc := krulestest.TraceCheck(t, nonblock.SyscallThreshold(0), nonblock.IgnoreAllocBlocks())
	f, err := os.CreateTemp(t.TempDir(), "fast")
	require.NoError(t, err)
	defer f.Close()
	const writes = 200
	nonblock.Start()
	for range writes {
		_, err = f.Write([]byte("a small write\n"))
	}
	nonblock.End()
	require.NoError(t, err)
	require.NoError(t, tc.Flush())
	blocks := 0
	for _, r := range rec.Reports() {
		blocks += sameBlockCount(t, r)
	}
	require.Less(t, blocks, writes/2, "writes that kept their P were counted as blocks")
}

// A system call made in a section that returned with its processor leaves
// nothing behind: a later one, made outside every section, that loses its
// P is not blamed on the section the goroutine has left.
func TestTraceDoesNotBlameALaterSyscallOnAnEndedSection(t *testing.T) {
	rec := krulestest.Record(t)
	tc := krulestest.TraceCheck(t, nonblock.IgnoreAllocBlocks())
	f, err := os.CreateTemp(t.TempDir(), "fast")
	require.NoError(t, err)
	defer f.Close()
	nonblock.Start()
	_, err = f.Write([]byte("a small write\n"))
	nonblock.End()
	require.NoError(t, err)

	block, wake := blockCases[len(blockCases)-1].setup(t) // a read(2) that loses its P
	me := task.ID()
	done, returned := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		if waitState(me, "syscall", returned) {
			wake()
		}
	}()
	block()
	close(returned)
	<-done
	require.NoError(t, tc.Flush())
	require.Empty(t, rec.Reports())
}

// A finding one checker's snapshot hands to the checker that owns it is
// delivered by that checker once: its later snapshots do not deliver it
// again.
func TestTraceFindingHandedToItsCheckerIsDeliveredOnce(t *testing.T) {
	rec := krulestest.Record(t)
	tc := krulestest.TraceCheck(t, nonblock.IgnoreAllocBlocks())
	started := make(chan error, 1)
	var oc *nonblock.TraceChecker
	go func() { // another checker, on a goroutine of its own: not the owner
		var err error
		oc, err = nonblock.StartTraceCheck()
		started <- err
	}()
	require.NoError(t, <-started)
	defer func() { require.NoError(t, oc.Stop()) }()

	nonblock.Start()
	time.Sleep(time.Millisecond)
	nonblock.End()
	require.NoError(t, oc.Flush()) // finds ours, hands it over
	require.Empty(t, rec.Reports(), "kept for its owner")
	require.NoError(t, tc.Flush())
	require.Equal(t, []krules.Kind{krules.ScheduleInNonBlock}, rec.Kinds())
	require.NoError(t, tc.Flush())
	require.Len(t, rec.Reports(), 1, "delivered once")
}

// A stopped checker reports nothing more: Flush after Stop fails even
// while another checker keeps the shared recorder running.
func TestTraceFlushAfterStopFailsWhileOthersRun(t *testing.T) {
	krulestest.Check(t)
	a, err := nonblock.StartTraceCheck()
	require.NoError(t, err)
	b, err := nonblock.StartTraceCheck()
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Stop()) }()
	require.NoError(t, a.Stop())
	require.ErrorContains(t, a.Flush(), "flush after Stop")
}
