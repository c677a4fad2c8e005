// Package splat lays out reports the way the kernel prints them: the framed
// headline of lockdep reports, WARN()'s cut-here block, the CPU/PID/Comm line
// and the call trace. Every package builds its report text with it; the root
// package delivers the result.
package splat

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
)

// Ident is the identity line under a lockdep headline, which the kernel
// prints release first ("6.12.0 #1 Not tainted").
func Ident() string { return release() + " " + PrintTainted() }

// release stands for the kernel release: the library and the Go version.
func release() string { return "krules " + runtime.Version() }

// TaintRelease is what dump_stack's CPU/PID/Comm line and the hung-task
// report print after the task: print_tainted() first, then the release.
func TaintRelease() string { return PrintTainted() + " " + release() }

// Header writes lockdep's framing: a rule of '=' as wide as the headline,
// the headline, the identity line and a rule of '-'.
func Header(b *strings.Builder, headline string) {
	b.WriteString(strings.Repeat("=", len(headline)))
	b.WriteByte('\n')
	b.WriteString(headline)
	b.WriteByte('\n')
	b.WriteString(Ident())
	b.WriteByte('\n')
	b.WriteString(strings.Repeat("-", len(headline)))
	b.WriteByte('\n')
}

// Dump writes what v6.12's dump_stack prints (dump_stack_print_info): the
// CPU/UID/PID/Comm line, with the process's effective uid for the task's
// (goroutines have none of their own), then, once tainted, the flags
// spelled out as print_tainted_verbose does ("Tainted: [W]=WARN"), then the
// call trace of pcs.
func Dump(b *strings.Builder, id int64, comm string, pcs []uintptr) {
	fmt.Fprintf(b, "CPU: - UID: %d PID: %d Comm: %s %s\n", uint32(os.Geteuid()), id, comm, TaintRelease())
	if Tainted() != 0 {
		b.WriteString(PrintTaintedVerbose())
		b.WriteByte('\n')
	}
	CallTrace(b, pcs)
}

// Modules is what print_modules (kernel/module/main.c) prints for a kernel
// with no module loaded and none unloaded: the prefix and the newline,
// nothing between. WARN blocks (__warn), bad_page and __schedule_bug print
// it; lockdep's reports and __might_resched's do not call print_modules.
const Modules = "Modules linked in:\n"

// CallTrace writes "Call Trace:" and the frames of pcs between the " <TASK>"
// and " </TASK>" lines that v6.12's show_trace_log_lvl
// (arch/x86/kernel/dumpstack.c) prints around the frames of a task's stack,
// as it does for dump_stack and sched_show_task alike.
func CallTrace(b *strings.Builder, pcs []uintptr) {
	b.WriteString("Call Trace:\n <TASK>\n")
	stack.Format(b, pcs, " ")
	b.WriteString(" </TASK>\n")
}

// WarnHeadline is WARN()'s headline for a problem detected at the user's
// frame f: "WARNING: CPU: - PID: 42 at dir/file.go:12 pkg.Func+0x1c", laid
// out as __warn prints it ("WARNING: CPU: %d PID: %d at %s:%d %pS"), with
// no CPU to name, as in Dump's line.
func WarnHeadline(id int64, f runtime.Frame) string {
	return fmt.Sprintf("WARNING: CPU: - PID: %d at %s %s+0x%x", id, stack.FileLineOf(f), stack.ShortFunc(f.Function), f.PC-f.Entry)
}

// BugHeadline is BUG()'s headline for a BUG_ON at the user's frame f:
// "kernel BUG at dir/file.go:12!", as report_bug prints it ("kernel BUG at
// %s:%u!").
func BugHeadline(f runtime.Frame) string {
	return fmt.Sprintf("kernel BUG at %s!", stack.FileLineOf(f))
}

// Bug lays out the oops a BUG_ON() raises on x86: the cut-here rule, the
// message (if any; the kernel's BUG_ON has none, krules names the
// condition), report_bug's headline, __die_header's "Oops: invalid opcode"
// line, the dump, print_modules' line and the end-of-trace rule, in v6.12's
// order (lib/bug.c __report_bug, arch/x86/kernel/dumpstack.c __die_body).
func Bug(b *strings.Builder, headline, message string, id int64, comm string, pcs []uintptr) {
	cutHere(b, headline, message)
	b.WriteString("Oops: invalid opcode: 0000 [#1] PREEMPT SMP\n")
	Dump(b, id, comm, pcs)
	b.WriteString(Modules)
	b.WriteString("---[ end trace 0000000000000000 ]---\n")
}

// Warn lays out a WARN(): the cut-here rule, the message (if any), the
// headline, print_modules' line, the dump and the end-of-trace rule, in
// v6.12's __warn order (kernel/panic.c).
func Warn(b *strings.Builder, headline, message string, id int64, comm string, pcs []uintptr) {
	cutHere(b, headline, message)
	b.WriteString(Modules)
	Dump(b, id, comm, pcs)
	b.WriteString("---[ end trace 0000000000000000 ]---\n")
}

// cutHere writes how WARN() and BUG() begin: the cut-here rule, the message
// (if any, its trailing newlines dropped, as printk ends a line once) and
// the headline.
func cutHere(b *strings.Builder, headline, message string) {
	b.WriteString("------------[ cut here ]------------\n")
	if message != "" {
		b.WriteString(strings.TrimRight(message, "\n"))
		b.WriteByte('\n')
	}
	b.WriteString(headline)
	b.WriteByte('\n')
}

// Comm returns the name reports print for goroutine t: its chosen name, or
// else the function the goroutine started in, taken from pcs (a stack that
// reaches the goroutine's entry). Test goroutines are named after the test.
func Comm(t *task.Task, pcs []uintptr) string {
	if t != nil && t.Name != "" {
		return t.Name
	}
	return EntryName(pcs)
}

// EntryName returns the short name of the outermost user function in pcs.
func EntryName(pcs []uintptr) string {
	frames := runtime.CallersFrames(pcs)
	last := ""
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.goexit", f.Function == "":
		case f.Function == "testing.tRunner" && last != "":
			return shortName(last) // the test function runs just above tRunner
		default:
			last = f.Function
		}
		if !more {
			break
		}
	}
	if last == "" {
		return "goroutine"
	}
	return shortName(last)
}

func shortName(fn string) string {
	fn = stack.ShortFunc(fn)
	if i := strings.IndexByte(fn, '.'); i >= 0 && i+1 < len(fn) {
		return fn[i+1:]
	}
	return fn
}

// FullStack captures the calling goroutine's stack down to its entry, skip
// frames above the caller.
func FullStack(skip int) []uintptr {
	pcs := make([]uintptr, 256)
	n := runtime.Callers(skip+2, pcs)
	return pcs[:n:n]
}
