package krules

import (
	"bytes"
	"regexp"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/internal/lineage"
	"github.com/krules/krules/internal/splat"
	"github.com/krules/krules/internal/task"
)

// unclaimed runs the test with reports going to the output, hooks and
// policy, as in a program, and with fresh counters.
func unclaimed(t testing.TB) *printed {
	claims.mu.Lock()
	fallback, open := claims.fallback, claims.open
	claims.fallback, claims.open = nil, nil
	claims.mu.Unlock()
	out := new(printed)
	prev := SetOutput(out)
	Reset()
	t.Cleanup(func() {
		SetOutput(prev)
		Reset()
		claims.mu.Lock()
		claims.fallback, claims.open = fallback, open
		claims.mu.Unlock()
	})
	return out
}

// printed is what unclaimed captures. The package writes it under its
// sinks lock, from whichever goroutine prints (a background sweep, say),
// so the test reads it under that lock too.
type printed struct{ b bytes.Buffer }

func (p *printed) Write(b []byte) (int, error) { return p.b.Write(b) }

func (p *printed) String() string {
	sinks.mu.Lock()
	defer sinks.mu.Unlock()
	return p.b.String()
}

func (p *printed) Bytes() []byte { return []byte(p.String()) }

// record is krulestest.Record for the package's own tests, which cannot
// import krulestest (it imports this package).
func record(t *testing.T) *Claim {
	c := OpenClaim(nil)
	t.Cleanup(func() {
		ReapExited()
		c.Close()
	})
	return c
}

func kinds(c *Claim) []Kind {
	var ks []Kind
	for _, r := range c.Reports() {
		ks = append(ks, r.Kind)
	}
	return ks
}

func sleepReport(line string) *Report {
	b := NewReport(SleepInAtomic, "BUG: sleeping function called from invalid context at "+line, 0)
	b.Printf("%s\n", b.Headline())
	return b.Report()
}

func TestSleepReportsAreRateLimitedOnePerSecond(t *testing.T) {
	out := unclaimed(t)
	Emit(sleepReport("a.go:1"))
	Emit(sleepReport("a.go:2"))
	Emit(sleepReport("a.go:3"))
	require.Equal(t, 1, bytes.Count(out.Bytes(), []byte("BUG: sleeping function")), "one printed a second")
	st := ReportStats()
	require.Equal(t, 3, st.Reports[SleepInAtomic], "every report is counted")
	require.Equal(t, 2, st.Suppressed)
	require.True(t, st.Tainted)

	// The next interval prints again and says how many were kept quiet.
	sinks.mu.Lock()
	sinks.limits[SleepInAtomic].begin = time.Now().Add(-2 * time.Second)
	sinks.mu.Unlock()
	r := sleepReport("a.go:4")
	Emit(r)
	require.Equal(t, 2, r.Suppressed)
	require.Contains(t, out.String(), "krules: 2 sleep-in-atomic reports suppressed\nBUG: sleeping function called from invalid context at a.go:4")

	// Those were counted once: the interval after that says nothing.
	sinks.mu.Lock()
	sinks.limits[SleepInAtomic].begin = time.Now().Add(-2 * time.Second)
	sinks.mu.Unlock()
	r = sleepReport("a.go:5")
	Emit(r)
	require.Zero(t, r.Suppressed)
	require.Equal(t, 1, bytes.Count(out.Bytes(), []byte("reports suppressed")))
}

// An allocation failure warning (warn_alloc) is limited to one in ten
// seconds, as the kernel's nopage_rs.
func TestAllocFailureWarningsAreRateLimited(t *testing.T) {
	out := unclaimed(t)
	for range 3 {
		Emit(Warn(AllocFailure, "page allocation failure: order:0", 0))
	}
	require.Equal(t, 1, bytes.Count(out.Bytes(), []byte("page allocation failure")))
	require.Equal(t, 2, ReportStats().Suppressed)
	sinks.mu.Lock()
	sinks.limits[AllocFailure].begin = time.Now().Add(-9 * time.Second)
	sinks.mu.Unlock()
	Emit(Warn(AllocFailure, "page allocation failure: order:0", 0))
	require.Equal(t, 1, bytes.Count(out.Bytes(), []byte("page allocation failure")), "still within ten seconds")
}

func TestOtherKindsAreNotRateLimited(t *testing.T) {
	out := unclaimed(t)
	for range 3 {
		Emit(Warn(LockdepMisuse, "pinning an unheld lock", 0))
	}
	require.Equal(t, 3, bytes.Count(out.Bytes(), []byte("[ cut here ]")))
	require.Zero(t, ReportStats().Suppressed)
}

func TestPanicPolicyPanicsWithTheReportAfterPrinting(t *testing.T) {
	out := unclaimed(t)
	defer SetPanicOnReport(SetPanicOnReport(true))
	r := Warn(NonBlockImbalance, "unbalanced", 0)
	require.PanicsWithValue(t, r, func() { Emit(r) })
	require.Contains(t, out.String(), "unbalanced")
	// The value travels as an error whose message is the headline; the
	// full text is its String, which is what was printed.
	require.PanicsWithError(t, r.Headline, func() { Emit(r) })
	require.NotEqual(t, r.Headline, r.String())
	require.Contains(t, out.String(), r.String())
}

// A claimed report (a test's, Collect's) is the claimer's alone: the panic
// policy and the hooks, which are for reports nobody claimed, leave it be.
func TestClaimedReportsSkipThePanicPolicyAndTheHooks(t *testing.T) {
	out := unclaimed(t)
	defer SetPanicOnReport(SetPanicOnReport(true))
	var hooked int
	defer OnReport(func(*Report) { hooked++ })()
	var reps []*Report
	require.NotPanics(t, func() {
		reps = Collect(func() { Emit(Warn(MempoolMisuse, "claimed", 0)) })
	})
	require.Len(t, reps, 1)
	require.Zero(t, hooked)
	require.NotContains(t, out.String(), "claimed")
	require.Panics(t, func() { Emit(Warn(MempoolMisuse, "unclaimed", 0)) })
	require.Equal(t, 1, hooked)
}

func TestHooksSeePrintedReportsAndCanBeRemoved(t *testing.T) {
	unclaimed(t)
	var seen []Kind
	remove := OnReport(func(r *Report) { seen = append(seen, r.Kind) })
	Emit(Warn(MempoolMisuse, "x", 0))
	remove()
	Emit(Warn(MempoolMisuse, "y", 0))
	require.Equal(t, []Kind{MempoolMisuse}, seen)
}

func TestRecordedReportsBypassTheRateLimit(t *testing.T) {
	rec := record(t)
	for range 3 {
		Emit(sleepReport("b.go:1"))
	}
	require.Equal(t, 3, rec.Len())
}

func TestGoroutineReturningWithLocksHeldIsReportedAndReaped(t *testing.T) {
	rec := record(t)
	// lockclass, which labels classes, cannot be imported here: a class
	// that is its own label stands in for one.
	self := func(c unsafe.Pointer) string { return *(*string)(c) }
	label := "(&dev->lock){+.+.}-{3:3}"
	done := make(chan int64)
	go func() {
		SetName("leaky")
		tk := task.Current()
		tk.Lockdep.Held = append(tk.Lockdep.Held, task.HeldLock{Class: unsafe.Pointer(&label), Label: self})
		tk.Publish() // as lockclass's pushes do, for -race: a sweep may read it
		done <- tk.ID
	}()
	id := <-done
	require.Eventually(t, func() bool { _, alive := lineage.Live()[id]; return !alive }, 5*time.Second, time.Millisecond)
	ReapExited()
	require.Equal(t, []Kind{LocksHeldAtExit}, kinds(rec))
	r := rec.Last()
	require.Equal(t, "WARNING: leaky/"+itoa(id)+" still has locks held!", r.Headline)
	require.Contains(t, r.Text, "leaky/"+itoa(id)+" returned (detected by ", "found dead, not at its own exit")
	require.Contains(t, r.Text, "1 lock held by leaky/"+itoa(id)+":\n #0: ")
	require.Contains(t, r.Text, "(&dev->lock){+.+.}-{3:3}")
	require.Equal(t, Goroutine{ID: id, Name: "leaky"}, r.Goroutine)
	// The trace starts at the API function that found it, not at the
	// helpers that lay the report out.
	top, _ := runtime.CallersFrames(r.Stack).Next()
	require.Equal(t, "github.com/krules/krules.ReapExited", top.Function)
	require.Nil(t, task.LookupID(id), "the dead goroutine's record is gone")
}

func TestSlowGoroutineIDPathIsReportedOnce(t *testing.T) {
	rec := record(t)
	restore := task.ForceSlowPath("offset of g.goid changed")
	defer restore()
	warnSlowGoroutineIDs() // what the package's init does when the start-up check fails
	require.Equal(t, []Kind{GoroutineID}, kinds(rec))
	require.Contains(t, rec.Last().Text, "goroutine ids fall back to runtime.Stack")
	require.Contains(t, rec.Last().Text, "offset of g.goid changed")
	require.Equal(t, task.StackID(), CurrentGoroutine().ID)
}

func itoa(n int64) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int64) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// __cant_sleep has its own one-a-second limit (its prev_jiffy), as
// __might_resched has: unclaimed "assuming atomic context" reports are
// rate limited too.
func TestAssumeAtomicReportsAreRateLimited(t *testing.T) {
	out := unclaimed(t)
	for range 3 {
		b := NewReport(AssumeAtomic, "BUG: assuming atomic context at a.go:1", 0)
		b.Printf("%s\n", b.Headline())
		Emit(b.Report())
	}
	require.Equal(t, 1, bytes.Count(out.Bytes(), []byte("BUG: assuming atomic context")))
	require.Equal(t, 2, ReportStats().Suppressed)
}

// Reset starts the rate limits afresh, and the counters list only the
// kinds raised since.
func TestResetClearsTheRateLimitsAndCounters(t *testing.T) {
	out := unclaimed(t)
	Emit(sleepReport("c.go:1"))
	Reset()
	require.False(t, ReportStats().Tainted, "the taint is cleared")
	Emit(sleepReport("c.go:2"))
	require.Equal(t, 2, bytes.Count(out.Bytes(), []byte("BUG: sleeping function")), "a new interval after Reset")
	require.Equal(t, map[Kind]int{SleepInAtomic: 1}, ReportStats().Reports)
}

// SetOutput(nil) discards unclaimed reports; the hooks still see them,
// and removing one hook leaves the others.
func TestSetOutputNilDiscardsAndHooksAreRemovedOneByOne(t *testing.T) {
	unclaimed(t)
	SetOutput(nil)
	var first, second int
	removeFirst := OnReport(func(*Report) { first++ })
	defer OnReport(func(*Report) { second++ })()
	require.NotPanics(t, func() { Emit(Warn(MempoolMisuse, "discarded", 0)) })
	removeFirst()
	Emit(Warn(MempoolMisuse, "discarded", 0))
	require.Equal(t, 1, first)
	require.Equal(t, 2, second)
}

// The fallback claim takes what no open claim takes; closed, it takes
// nothing more and reports are printed again.
func TestFallbackClaimTakesUnclaimedReportsUntilClosed(t *testing.T) {
	out := unclaimed(t)
	fb := OpenFallbackClaim(nil)
	Emit(Warn(MempoolMisuse, "to the fallback", 0))
	require.Equal(t, 1, fb.Len())
	require.NotContains(t, out.String(), "to the fallback")
	fb.Close()
	Emit(Warn(MempoolMisuse, "printed", 0))
	require.Equal(t, 1, fb.Len())
	require.Contains(t, out.String(), "printed")
}

// On one goroutine, the claim opened first takes the goroutine's reports
// while a later one is open too.
func TestTheFirstClaimOnAGoroutineTakesItsReports(t *testing.T) {
	unclaimed(t)
	first := OpenClaim(nil)
	defer first.Close()
	second := OpenClaim(nil)
	defer second.Close()
	other := foreignClaim(t) // a second goroutine's claim, so that lineage decides
	Emit(Warn(MempoolMisuse, "mine", 0))
	require.Equal(t, 1, first.Len())
	require.Zero(t, second.Len())
	require.Zero(t, other.Len())
}

// A goroutine with a task record but no SetName name is named after the
// function it started in, as one without a record is; SetName("") clears
// a name and drops the record it kept.
func TestGoroutineNamesWithAndWithoutARecord(t *testing.T) {
	unclaimed(t)
	tk := task.Current() // a record, as a section or a held lock makes one
	require.Equal(t, "TestGoroutineNamesWithAndWithoutARecord", CurrentGoroutine().Name)
	tk.ReleaseIfEmpty()
	SetName("kworker/0:1")
	require.Equal(t, "kworker/0:1", CurrentGoroutine().Name)
	SetName("")
	require.Equal(t, "TestGoroutineNamesWithAndWithoutARecord", CurrentGoroutine().Name)
	require.Nil(t, task.Lookup(), "the name's record is dropped")
}

// warn_alloc's nopage_rs is a ratelimit_state: its next interval begins
// only once more than ten seconds have passed (___ratelimit); the sleep
// checks' prev_jiffy lets a report through once a second has.
func TestRateLimitIntervalBoundaries(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lim := newLimits()
	a := lim[AllocFailure]
	require.True(t, a.allow(t0))
	require.False(t, a.allow(t0.Add(10*time.Second)))
	require.True(t, a.allow(t0.Add(10*time.Second+time.Nanosecond)))
	for _, k := range []Kind{SleepInAtomic, AssumeAtomic} {
		s := lim[k]
		require.True(t, s.allow(t0), k)
		require.False(t, s.allow(t0.Add(time.Second-time.Nanosecond)), k)
		require.True(t, s.allow(t0.Add(time.Second)), k)
	}
}

// One report kept quiet is said too, before the next printed one.
func TestASingleSuppressedReportIsSaid(t *testing.T) {
	out := unclaimed(t)
	Emit(sleepReport("d.go:1"))
	Emit(sleepReport("d.go:2"))
	sinks.mu.Lock()
	sinks.limits[SleepInAtomic].begin = time.Now().Add(-2 * time.Second)
	sinks.mu.Unlock()
	r := sleepReport("d.go:3")
	Emit(r)
	require.Equal(t, 1, r.Suppressed)
	require.Contains(t, out.String(), "krules: 1 sleep-in-atomic reports suppressed\nBUG: sleeping function called from invalid context at d.go:3")
}

// A report that its package limited (bad_page's) says so in its own text:
// Emit, which has no limit for its kind, prints it as it is.
func TestAReportLimitedWhereRaisedIsPrintedAsItIs(t *testing.T) {
	out := unclaimed(t)
	b := NewReport(BadPage, "BUG: Bad page state in process x  pfn:00001", 0)
	b.Printf("BUG: Bad page state: 2 messages suppressed\n%s\n", b.Headline())
	r := b.Report()
	r.Suppressed = 2
	Emit(r)
	require.Equal(t, r.Text, out.String())
	require.Equal(t, 2, r.Suppressed)
}

// Logf ends every line with one newline, the format's own or its.
func TestLogfEndsEachLineOnce(t *testing.T) {
	out := unclaimed(t)
	Logf("note: %s", "a")
	Logf("note: %s\n", "b")
	require.Equal(t, "note: a\nnote: b\n", out.String())
}

// Emitting a report taints as the kernel function that prints it calls
// add_taint: lockdep's reports, warn_alloc and the hung-task report leave
// the process untainted (the next report still says "Not tainted");
// might_sleep's BUG and any WARN() taint W; bad_page taints B; a report of
// a tainting kind built with Warn taints W only, as __warn does.
func TestEmitTaintsAsTheKernelsAddTaint(t *testing.T) {
	unclaimed(t)
	for _, k := range []Kind{CircularDependency, RecursiveLocking, BadUnlockBalance, LocksHeldAtExit,
		SuspiciousRCU, InvalidWaitContext, AllocFailure, MempoolPoison, HungTask} {
		Emit(NewReport(k, "untainting "+k.String(), 0).Report())
		Emit(&Report{Kind: k, Headline: "a Report value"})
		require.Equal(t, "Not tainted", splat.PrintTainted(), k.String())
	}
	Emit(Warn(SlabError, "kfree: Object is not a Slab page!", 0))
	require.Equal(t, splat.TaintWarn, splat.Tainted(), "a WARN taints W whatever its kind")
	Reset()
	Emit(NewReport(BadPage, "BUG: Bad page state in process t  pfn:00001", 0).Report())
	require.Equal(t, splat.TaintBadPage, splat.Tainted())
	Emit(sleepReport("t.go:1"))
	require.Equal(t, splat.TaintBadPage|splat.TaintWarn, splat.Tainted())
	require.True(t, ReportStats().Tainted)
	Reset()
	Emit(&Report{Kind: ScheduleInNonBlock, Headline: "BUG: scheduling in a non-blocking section: t/1/1"})
	require.Equal(t, splat.TaintWarn, splat.Tainted(), "a Report value taints as its kind")
}

// A BUG_ON's report is the oops x86 prints for it: "kernel BUG at
// file:line!" naming the caller, report_bug's cut-here rule before it,
// __die_header's "Oops: invalid opcode" line after, the dump, then
// print_modules; emitting it taints D (oops_end's add_taint(TAINT_DIE)),
// not W, whatever its kind.
func TestBugIsAnOopsThatTaintsD(t *testing.T) {
	unclaimed(t)
	r := Bug(FenceMisuse, "BUG_ON(x): what went wrong", 0)
	require.Regexp(t, `^kernel BUG at [^ ]*emit_internal_test\.go:\d+!$`, r.Headline)
	require.Regexp(t, `^------------\[ cut here \]------------\nBUG_ON\(x\): what went wrong\n`+
		regexp.QuoteMeta(r.Headline)+`\nOops: invalid opcode: 0000 \[#1\] PREEMPT SMP\nCPU: `, r.Text)
	require.Regexp(t, `(?s)\n </TASK>\nModules linked in:\n---\[ end trace 0000000000000000 \]---\n$`, r.Text)
	Emit(r)
	require.Equal(t, splat.TaintDie, splat.Tainted())
	require.Equal(t, "Tainted: G      D           ", splat.PrintTainted())
	require.Equal(t, "Tainted: [D]=DIE", splat.PrintTaintedVerbose())
}
