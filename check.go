package krules

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/krules/krules/internal/lineage"
	"github.com/krules/krules/internal/splat"
	"github.com/krules/krules/internal/task"
)

// A claimer takes the reports raised while a test runs: Check fails the test
// with them, Record keeps them for the test to inspect, VerifyTestMain keeps
// the ones no test claimed.
type claimer struct {
	tb      testing.TB // the test, for Check and Record
	goid    int64      // the goroutine whose descendants' reports it takes
	mode    claimMode
	each    func(*Report) // CollectFunc's: takes each report instead of keeping it
	mu      sync.Mutex
	reports []*Report
}

type claimMode int

const (
	claimRecord  claimMode = iota // keep (Record, Collect)
	claimFail                     // keep and fail the test (Check)
	claimPackage                  // keep and print (VerifyTestMain)
)

func (c *claimer) deliver(r *Report) {
	if c.each != nil {
		c.each(r)
		return
	}
	c.mu.Lock()
	c.reports = append(c.reports, r)
	c.mu.Unlock()
	switch c.mode {
	case claimPackage:
		sinks.mu.Lock()
		fmt.Fprint(sinks.out, r.Text)
		sinks.mu.Unlock()
	case claimFail:
		c.tb.Errorf("krules: %s report:\n%s", r.Kind, r.Text)
	}
}

// claimersFor attributes a report to the tests running when it was raised:
// the test whose goroutine raised it, else the test that started the
// goroutine (directly or through other goroutines), else, if that cannot be
// told, every running test. With no test claiming, the package claimer
// (VerifyTestMain) takes it.
func claimersFor(r *Report) []*claimer {
	sinks.mu.Lock()
	tests := slices.Clone(sinks.testClaimers)
	pkg := sinks.packageClaimer
	sinks.mu.Unlock()
	switch {
	case len(tests) == 0:
		if pkg != nil {
			return []*claimer{pkg}
		}
		return nil
	case len(tests) == 1:
		return tests
	}
	byGoroutine := map[int64]*claimer{}
	for _, c := range tests {
		byGoroutine[c.goid] = c
	}
	parents := lineage.Live()
	for id, hops := r.Goroutine.ID, 0; id > 0 && hops < 1000; id, hops = parentOf(parents, id), hops+1 {
		if c := byGoroutine[id]; c != nil {
			return []*claimer{c}
		}
	}
	return tests
}

// parentOf returns the goroutine that started id: from the live goroutines,
// or else as noted by the code raising a report about a goroutine that has
// returned (the trace checker learns parents from the trace).
func parentOf(live map[int64]int64, id int64) int64 {
	if p, ok := live[id]; ok {
		return p
	}
	p, _ := lineage.Noted(id)
	return p
}

func pushClaimer(c *claimer) {
	sinks.mu.Lock()
	sinks.testClaimers = append([]*claimer{c}, sinks.testClaimers...)
	sinks.mu.Unlock()
}

func popClaimer(c *claimer) {
	sinks.mu.Lock()
	defer sinks.mu.Unlock()
	sinks.testClaimers = slices.DeleteFunc(sinks.testClaimers, func(x *claimer) bool { return x == c })
}

func addClaimer(tb testing.TB, mode claimMode) *claimer {
	tb.Helper()
	c := &claimer{tb: tb, goid: task.ID(), mode: mode}
	pushClaimer(c)
	tb.Cleanup(func() {
		reapExited()
		popClaimer(c)
	})
	return c
}

// Collect runs fn and returns the reports raised while it ran, on the
// calling goroutine and on goroutines it started, instead of printing them.
// Programs and examples use it to count or show what a scenario provokes.
func Collect(fn func()) []*Report {
	c := &claimer{goid: task.ID(), mode: claimRecord}
	pushClaimer(c)
	defer popClaimer(c)
	fn()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reports
}

// CollectFunc runs fn and hands each report raised while it ran, on the
// calling goroutine and on goroutines it started, to each instead of
// printing it. Unlike Collect it keeps none, so a program that counts
// thousands of reports runs in constant memory. each runs on the goroutine
// that raised the report, possibly on several at once, and must not block.
func CollectFunc(fn func(), each func(*Report)) {
	c := &claimer{goid: task.ID(), mode: claimRecord, each: each}
	pushClaimer(c)
	defer popClaimer(c)
	fn()
}

// Check makes every report raised while the test runs fail it, with the
// report's text. Reports raised on goroutines the test started count too.
// When the test ends, goroutines that returned while holding locks are
// reported ("still has locks held!"), which fails the test as well.
func Check(tb testing.TB) {
	tb.Helper()
	addClaimer(tb, claimFail)
}

// Recorder keeps the reports raised during a test that expects them.
type Recorder struct{ c *claimer }

// Record claims the reports raised while the test runs, without failing it,
// so the test can assert on them. It is how tests provoke reports on
// purpose.
func Record(tb testing.TB) *Recorder {
	tb.Helper()
	return &Recorder{addClaimer(tb, claimRecord)}
}

// Reports returns the reports recorded so far, oldest first.
func (r *Recorder) Reports() []*Report {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	return slices.Clone(r.c.reports)
}

// Kinds returns the kinds of the reports recorded so far, oldest first.
func (r *Recorder) Kinds() []Kind {
	var kinds []Kind
	for _, rep := range r.Reports() {
		kinds = append(kinds, rep.Kind)
	}
	return kinds
}

// Len returns the number of reports recorded so far.
func (r *Recorder) Len() int {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	return len(r.c.reports)
}

// Last returns the newest report, or nil.
func (r *Recorder) Last() *Report {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if len(r.c.reports) == 0 {
		return nil
	}
	return r.c.reports[len(r.c.reports)-1]
}

// Clear forgets the reports recorded so far.
func (r *Recorder) Clear() {
	r.c.mu.Lock()
	r.c.reports = nil
	r.c.mu.Unlock()
}

// Option configures VerifyTestMain and VerifyNone.
type Option func(*options)

type options struct{ leak []goleak.Option }

// LeakOptions passes options to goleak, such as goleak.IgnoreTopFunction.
func LeakOptions(opts ...goleak.Option) Option {
	return func(o *options) { o.leak = append(o.leak, opts...) }
}

// VerifyTestMain runs a package's tests the way goleak.VerifyTestMain does,
// and also fails the package if any report was raised that no test claimed
// with Check or Record, or if a goroutine returned holding locks.
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { krules.VerifyTestMain(m) }
func VerifyTestMain(m *testing.M, opts ...Option) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	goleak.VerifyTestMain(packageRun{m}, o.leak...)
}

type packageRun struct{ m *testing.M }

func (p packageRun) Run() int {
	c := &claimer{mode: claimPackage}
	sinks.mu.Lock()
	sinks.packageClaimer = c
	sinks.mu.Unlock()
	code := p.m.Run()
	reapExited()
	sinks.mu.Lock()
	sinks.packageClaimer = nil
	sinks.mu.Unlock()
	if n := len(c.reports); n > 0 {
		fmt.Fprintf(sinks.out, "krules: %d report(s) raised outside Check/Record during the tests (printed above)\n", n)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// VerifyNone checks at the end of a test that no goroutine leaked (goleak)
// and reports goroutines that returned holding locks.
func VerifyNone(tb testing.TB, opts ...Option) {
	tb.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	reapExited()
	goleak.VerifyNone(tb, o.leak...)
}

// reaping serialises reapExited: parallel tests end concurrently, and a
// record must be reaped once.
var reaping sync.Mutex

// reapExited finds task records whose goroutine has returned. A goroutine
// that returned holding locks is reported, as the kernel's do_exit does
// ("still has locks held!"); one that returned inside an atomic section gets
// the kernel's note. The records are then dropped, so nothing leaks.
func reapExited() {
	reaping.Lock()
	defer reaping.Unlock()
	// Records first, live goroutines second: a goroutine missing from a
	// snapshot taken after its record was seen has returned (ids are never
	// reused), while one that took its record after the snapshot would look
	// dead. Owner, not ID: the owners of live records are still writing them.
	type seen struct {
		t  *task.Task
		id int64
	}
	var records []seen
	task.Each(func(t *task.Task) bool {
		records = append(records, seen{t, t.Owner()})
		return true
	})
	live := lineage.Live()
	var dead []*task.Task
	for _, r := range records {
		if _, alive := live[r.id]; r.id > 0 && !alive && r.t.Owner() == r.id {
			dead = append(dead, r.t)
		}
	}
	for _, t := range dead {
		if len(t.Lockdep.Held) > 0 {
			who := fmt.Sprintf("%s/%d", commOf(t), t.ID)
			b := NewReport(LocksHeldAtExit, fmt.Sprintf("WARNING: %s still has locks held!", who), 1)
			splat.Header(&b.Builder, b.r.Headline)
			b.Printf("%s returned (detected by %s)\n", who, b.Who())
			task.FormatHeldLocks(&b.Builder, t, who)
			b.Backtrace()
			r := b.Report()
			r.Goroutine = Goroutine{ID: t.ID, Name: commOf(t)}
			Emit(r)
		}
		if t.Preempt > 0 {
			Logf("note: %s/%d exited with preempt_count %d", commOf(t), t.ID, t.Preempt)
		}
		task.Reap(t)
	}
}

func commOf(t *task.Task) string {
	if t.Name != "" {
		return t.Name
	}
	return "goroutine"
}
