package krules

import (
	"fmt"
	"strings"

	"github.com/krules/krules/internal/splat"
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
)

// Report is one kernel-style report (a "splat"): the rule that was broken,
// the headline a kernel developer would grep for, the full text laid out as
// the kernel prints it, the goroutine that broke the rule and its stack.
type Report struct {
	// Kind says which rule was broken.
	Kind Kind
	// Headline is the report's first line, such as
	// "BUG: sleeping function called from invalid context at drv.go:42".
	Headline string
	// Text is the whole report, headline included.
	Text string
	// Goroutine is the goroutine the report is about; usually the caller.
	Goroutine Goroutine
	// Lineage lists the goroutines that started Goroutine, its parent
	// first, when the code raising the report knows them (the trace checker
	// learns them from the execution trace, for goroutines that may have
	// returned since). Claims use it to attribute the report; the runtime
	// is asked only for what it leaves out.
	Lineage []int64
	// Stack holds the program counters of the goroutine's stack when the
	// report was raised, innermost first.
	Stack []uintptr
	// Suppressed counts reports of the same rate-limited group that were
	// not printed since the previous printed one (the kernel's
	// "N callbacks suppressed", or bad_page's "N messages suppressed").
	Suppressed int

	// taint is what Emit adds to the taint: TAINT_WARN for a Warn report,
	// TAINT_DIE for a Bug report; zero for the kind's own (kindTaints).
	taint splat.Taint
}

// Goroutine identifies a goroutine the way the kernel prints a task:
// "name/id", like comm/pid.
type Goroutine struct {
	ID   int64
	Name string
}

// String returns "name/id".
func (g Goroutine) String() string { return fmt.Sprintf("%s/%d", g.Name, g.ID) }

// Error returns the headline, so a report can travel as an error (it is the
// value of the panic under the panic policy).
func (r *Report) Error() string { return r.Headline }

// String returns the full text.
func (r *Report) String() string { return r.Text }

// StackText returns the stack as the report prints it, one frame a line.
func (r *Report) StackText() string { return stack.String(r.Stack, " ") }

// CurrentGoroutine describes the calling goroutine, naming it as reports do:
// its SetName name, or else the function it started in.
func CurrentGoroutine() Goroutine {
	id := task.ID()
	t := task.LookupID(id)
	if t != nil && t.Name != "" {
		return Goroutine{ID: id, Name: t.Name}
	}
	return Goroutine{ID: id, Name: splat.EntryName(splat.FullStack(1))}
}

// Builder helps a package lay out a report for the calling goroutine: it
// captures the stack once and offers the kernel's standard blocks.
type Builder struct {
	strings.Builder
	r    Report
	task *task.Task
}

// NewReport starts a report of the given kind and headline about the
// calling goroutine. The stack starts skip frames above NewReport's caller,
// so that a package can leave out its reporting helpers but keep the API
// function the user called, as the kernel's traces do.
func NewReport(kind Kind, headline string, skip int) *Builder {
	full := splat.FullStack(skip + 1)
	id := task.ID()
	t := task.LookupID(id)
	b := &Builder{task: t}
	b.r = Report{
		Kind:      kind,
		Headline:  headline,
		Goroutine: Goroutine{ID: id, Name: splat.Comm(t, full)},
		Stack:     full,
	}
	return b
}

// Who returns "name/id" of the report's goroutine.
func (b *Builder) Who() string { return b.r.Goroutine.String() }

// Header writes lockdep's framed headline.
func (b *Builder) Header() { splat.Header(&b.Builder, b.r.Headline) }

// HeldLocks writes the goroutine's held-lock list ("N locks held by ..."):
// lockdep_print_held_locks, as lockdep's own reports print it. Built with
// -tags krules_nolockdep (CONFIG_LOCKDEP=n) it writes nothing: no list is
// kept, and "no locks held" would be untrue.
func (b *Builder) HeldLocks() {
	if task.ConfigLockdep {
		task.FormatHeldLocks(&b.Builder, b.task, b.Who())
	}
}

// ShowHeldLocks is debug_show_held_locks, what reports from outside lockdep
// print (__might_resched, __cant_sleep): the held-lock list, or only "INFO:
// lockdep is turned off." once the default validator has turned itself off,
// because the list is no longer kept faithfully then. Built with -tags
// krules_nolockdep (CONFIG_LOCKDEP=n) it prints nothing at all, as the
// kernel's empty inline does.
func (b *Builder) ShowHeldLocks() {
	if !task.ConfigLockdep {
		return
	}
	if !task.DebugLocks() {
		b.WriteString(task.LockdepOff)
		return
	}
	b.HeldLocks()
}

// Backtrace writes "stack backtrace:" and the dump.
func (b *Builder) Backtrace() {
	b.WriteString("stack backtrace:\n")
	b.Dump()
}

// Dump writes the CPU/PID/Comm line and the call trace.
func (b *Builder) Dump() { splat.Dump(&b.Builder, b.r.Goroutine.ID, b.r.Goroutine.Name, b.r.Stack) }

// Printf appends formatted text.
func (b *Builder) Printf(format string, args ...any) { fmt.Fprintf(&b.Builder, format, args...) }

// Report finishes the text and returns the report, ready for Emit.
func (b *Builder) Report() *Report {
	r := b.r
	r.Text = b.String()
	return &r
}

// Warn builds a WARN()-style report about the calling goroutine: the
// cut-here block with message, a headline naming the first caller outside
// krules, __warn's "Modules linked in:" line, and the stack from skip
// frames above Warn's caller.
func Warn(kind Kind, message string, skip int) *Report {
	b := NewReport(kind, "", skip+1)
	b.r.Headline = splat.WarnHeadline(b.r.Goroutine.ID, stack.Caller(skip+1))
	splat.Warn(&b.Builder, b.r.Headline, message, b.r.Goroutine.ID, b.r.Goroutine.Name, b.r.Stack)
	b.r.taint = splat.TaintWarn
	return b.Report()
}

// Bug builds the report of a BUG_ON() that fired in the calling goroutine:
// the oops x86 prints for it (the cut-here rule, message, "kernel BUG at
// file:line!" naming the first caller outside krules as its headline,
// "Oops: invalid opcode", the stack from skip frames above Bug's caller,
// the "Modules linked in:" line). Emitting it taints D, as die's oops_end
// does with add_taint(TAINT_DIE, LOCKDEP_NOW_UNRELIABLE); the lock
// validator's half of that is lockclass.TaintNowUnreliable, which the
// caller runs after Emit. The kernel then kills the task; krules returns,
// and the caller goes on as its documentation says.
func Bug(kind Kind, message string, skip int) *Report {
	b := NewReport(kind, "", skip+1)
	b.r.Headline = splat.BugHeadline(stack.Caller(skip + 1))
	splat.Bug(&b.Builder, b.r.Headline, message, b.r.Goroutine.ID, b.r.Goroutine.Name, b.r.Stack)
	b.r.taint = splat.TaintDie
	return b.Report()
}

// Headline returns the report's headline.
func (b *Builder) Headline() string { return b.r.Headline }

// Name returns the goroutine's name as the report prints it.
func (b *Builder) Name() string { return b.r.Goroutine.Name }

// ID returns the goroutine's id.
func (b *Builder) ID() int64 { return b.r.Goroutine.ID }

// taints returns the taint flags emitting r adds (add_taint's flag).
func (r *Report) taints() splat.Taint {
	if r.taint != 0 {
		return r.taint
	}
	if r.Kind > 0 && int(r.Kind) < len(kindTaints) {
		return kindTaints[r.Kind]
	}
	return 0
}
