package nonblock

import (
	"errors"
	"sync"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
)

// TraceChecker finds, in the Go execution trace, goroutines that really
// blocked inside a non-block or atomic section: the kernel's check in
// schedule() (schedule_debug), which catches sleeping that no might_sleep()
// annotation announced. krules' own primitives check MightSleep at the call;
// the trace checker catches the rest: channel operations, select,
// sync.Mutex, sync.Cond, time.Sleep, network I/O and system calls that block,
// in user and third-party code alike.
//
// Each finding is reported as
//
//	BUG: scheduling in a non-blocking section: NAME/GOID/DEPTH
//
// or, for an atomic section, "BUG: scheduling while atomic: NAME/GOID/0xCOUNT",
// with what the goroutine blocked on, where the section was entered (for an
// atomic section after __schedule_bug's "Modules linked in:") and the
// blocking stack; the kind is krules.ScheduleInNonBlock. A block the runtime
// imposed on an allocation (GC assist, starting a GC cycle) is reported as
// krules.AllocBlockInNonBlock: Go's "allocation may sleep".
//
// Preemption and yields (runtime.Gosched) are not blocks, nor is a system
// call that returns before the scheduler takes its processor away. A
// goroutine started inside a section is not in it.
//
// The same block (same reason, same stack) repeated within one section is
// reported once, saying how many times it happened. The goroutine is named
// by krules.SetName, else after the function it started in, as other
// reports name it; its id is the goroutine id, which the trace shares.
//
// Detection is after the fact: findings are reported when the checker takes
// a snapshot of the trace (Flush, Stop), not at the blocking call. Only
// sections entered after the checker started are seen, since a region
// started while tracing is off never appears in the trace; a section that
// was already open gains its region only when a nested section is entered.
// The recorder keeps about a minute of trace (at most 64 MiB): a section
// entered longer ago than that is no longer seen.
type TraceChecker struct {
	cfg  traceConfig
	root int64 // the goroutine whose descendants' findings are ours

	mu      sync.Mutex // serialises Flush and Stop
	stopped bool
	handed  []delivery // findings other checkers' snapshots found for us (recorder.mu)
}

// TraceOption configures a trace checker.
type TraceOption func(*traceConfig)

type traceConfig struct {
	ignoreAlloc bool
	syscallMin  time.Duration
	unclaimed   func(*krules.Report)
}

// OnUnclaimed hands the checker's own findings that no claim takes (no
// krulestest.Record or Check, no krules.Collect of the goroutines that
// blocked) to fn instead of printing them; krulestest.TraceCheck fails the
// test with them. fn runs on the goroutine that calls Flush or Stop.
func OnUnclaimed(fn func(*krules.Report)) TraceOption {
	return func(c *traceConfig) { c.unclaimed = fn }
}

// IgnoreAllocBlocks drops findings of kind krules.AllocBlockInNonBlock: blocks
// the runtime imposed on an allocation (GC assist, GC start). Go cannot
// promise an allocation will not block, so code that allocates inside
// sections may choose to accept it.
func IgnoreAllocBlocks() TraceOption {
	return func(c *traceConfig) { c.ignoreAlloc = true }
}

// DefaultSyscallThreshold is how long a system call that lost its P must
// have lasted to be reported, unless SyscallThreshold says otherwise.
// Measured on a loaded 2-core machine, about one small file write in 15,000
// lost its P, taking 1.5 to 4 ms because the OS descheduled the thread: not a
// sleep, but indistinguishable from one in the trace.
const DefaultSyscallThreshold = 10 * time.Millisecond

// SyscallThreshold sets how long a system call that lost its processor must
// have lasted to be reported as a block (DefaultSyscallThreshold by default;
// 0 reports every one). The scheduler takes the processor of any system call
// that spans two of its checks, which happens to fast calls too when the
// machine is busy; the threshold keeps those out.
func SyscallThreshold(d time.Duration) TraceOption {
	return func(c *traceConfig) { c.syscallMin = d }
}

// StartTraceCheck starts checking the calling goroutine and every goroutine
// it starts from now on, directly or not, until Stop. Checkers share the
// process's one flight recorder (runtime/trace.FlightRecorder), which runs
// alongside `go test -trace`; it fails if another flight recorder is running.
// Findings are delivered with krules.Emit. Tests use krulestest.TraceCheck.
func StartTraceCheck(opts ...TraceOption) (*TraceChecker, error) {
	c := &TraceChecker{cfg: traceConfig{syscallMin: DefaultSyscallThreshold}, root: task.ID()}
	for _, o := range opts {
		o(&c.cfg)
	}
	if err := join(c); err != nil {
		return nil, err
	}
	return c, nil
}

// Flush takes a snapshot of the trace now and reports what it finds: this
// checker's findings, and those no checker owns. Findings of other running
// checkers are kept for them. Each finding is reported once.
func (c *TraceChecker) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("flush after Stop")
	}
	mine, unowned, err := c.collect()
	c.deliver(mine, true)
	c.deliver(unowned, false)
	return err
}

// Stop flushes and stops checking. It is idempotent.
func (c *TraceChecker) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	mine, unowned, err := c.collect()
	// Leave before reporting: under krules.SetPanicOnReport a report
	// unwinds, and the recorder must not stay on for a checker that is gone.
	c.stopped = true
	leave(c)
	c.deliver(mine, true)
	c.deliver(unowned, false)
	return err
}

// collect takes a snapshot and sorts out its findings (distribute).
func (c *TraceChecker) collect() (mine, unowned []delivery, err error) {
	res, err := snapshot()
	if err != nil {
		return nil, nil, err
	}
	mine, unowned = distribute(c, res)
	return mine, unowned, nil
}

// deliver reports findings, each carrying the parents that attribute it
// to its claim. With OnUnclaimed, the checker's own findings go through
// krules.Collect, so that those no other claim takes reach the function.
func (c *TraceChecker) deliver(ds []delivery, own bool) {
	var reports []*krules.Report
	for _, d := range ds {
		if c.cfg.ignoreAlloc && d.f.kind == krules.AllocBlockInNonBlock {
			continue
		}
		if d.f.reason == "" && d.f.syscall < c.cfg.syscallMin {
			continue
		}
		r := d.f.report()
		r.Lineage = d.lineage
		reports = append(reports, r)
	}
	emit := func() {
		for _, r := range reports {
			krules.Emit(r)
		}
	}
	if c.cfg.unclaimed == nil || !own {
		emit()
		return
	}
	for _, r := range krules.Collect(emit) {
		c.cfg.unclaimed(r)
	}
}
