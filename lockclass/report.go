package lockclass

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
)

// The reports, laid out as lockdep prints them (kernel/locking/lockdep.c):
// the framed headline, the kernel's sentences, held-lock lines
// "ADDR (name){usage}-{outer:inner}, at: SITE", and traces that start at the
// API function the user called (lockclass's own frames are left out, as the
// kernel's traces start at lock_acquire's callers).

const pkgPrefix = "github.com/krules/krules/lockclass."

func isOwnFrame(f runtime.Frame) bool {
	return strings.HasPrefix(f.Function, pkgPrefix) && !strings.HasSuffix(f.File, "_test.go")
}

// apiSkip returns how many frames above its caller the trace should start:
// at the outermost lockclass frame of the leading run.
func apiSkip() int {
	var pcs [64]uintptr
	n := runtime.Callers(2, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	last, i := 0, 0
	for {
		f, more := frames.Next()
		if !isOwnFrame(f) {
			break
		}
		last = i
		i++
		if !more {
			break
		}
	}
	return last
}

func newReport(kind krules.Kind, headline string) *krules.Builder {
	return krules.NewReport(kind, headline, apiSkip())
}

// warnf raises a WARN()-style report naming the user's call site.
func warnf(kind krules.Kind, format string, args ...any) *krules.Report {
	return krules.Warn(kind, fmt.Sprintf(format, args...), apiSkip())
}

// formatTrace writes a saved stack, one frame a line with the kernel's
// indentation, leaving out lockclass's internal frames above the API call.
func formatTrace(b *strings.Builder, pcs []uintptr, indent string) {
	frames := runtime.CallersFrames(pcs)
	var all []runtime.Frame
	for {
		f, more := frames.Next()
		if f.Function != "" && f.Function != "runtime.goexit" {
			all = append(all, f)
		}
		if !more {
			break
		}
	}
	start := 0
	for i, f := range all {
		if !isOwnFrame(f) {
			break
		}
		start = i
	}
	for _, f := range all[start:] {
		fmt.Fprintf(b, "%s%s\n", indent, stack.FormatFrame(f))
	}
}

func currentPCs() []uintptr {
	pcs := make([]uintptr, 64)
	return pcs[:runtime.Callers(2, pcs)]
}

func heldLine(h *task.HeldLock) string {
	var b strings.Builder
	task.FormatHeldLock(&b, h)
	b.WriteByte('\n')
	return b.String()
}

func className(h *task.HeldLock) string { return (*class)(h.Class).displayName() }

// acquiringWhileHolding prints the two locks of a deadlock report, as
// print_deadlock_bug and print_circular_bug_header both open.
func acquiringWhileHolding(b *krules.Builder, next, prev *task.HeldLock) {
	b.Printf("%s is trying to acquire lock:\n", b.Who())
	b.WriteString(heldLine(next))
	b.Printf("\nbut task is already holding lock:\n")
	b.WriteString(heldLine(prev))
}

// recursiveReport is print_deadlock_bug.
func recursiveReport(t *task.Task, prev, next *task.HeldLock) *krules.Report {
	b := newReport(krules.RecursiveLocking, "WARNING: possible recursive locking detected")
	b.Header()
	acquiringWhileHolding(b, next, prev)
	b.Printf("\nother info that might help us debug this:\n")
	b.Printf(" Possible unsafe locking scenario:\n\n")
	b.Printf("       CPU0\n")
	b.Printf("       ----\n")
	b.Printf("  lock(%s);\n", className(prev))
	b.Printf("  lock(%s);\n", className(next))
	b.Printf("\n *** DEADLOCK ***\n\n")
	b.Printf(" May be due to missing lock nesting notation\n\n")
	b.HeldLocks()
	b.WriteString("\n")
	b.Backtrace()
	return b.Report()
}

// circularReport is print_circular_bug: the existing chain from prev back
// to next in reverse order, each link with the stack that first recorded
// it, then the scenario.
func circularReport(t *task.Task, prev, next *task.HeldLock, nodes []bfsNode, found int, sync bool) *krules.Report {
	b := newReport(krules.CircularDependency, "WARNING: possible circular locking dependency detected")
	b.Header()
	acquiringWhileHolding(b, next, prev)
	b.Printf("\nwhich lock already depends on the new lock.\n\n")
	b.Printf("\nthe existing dependency chain (in reverse order) is:\n")
	var path []bfsNode
	for i := found; i >= 0; i = nodes[i].parent {
		path = append(path, nodes[i])
	}
	depth := len(path) - 1
	for i, n := range path {
		b.Printf("\n-> #%d %s:\n", depth-i, n.c.label())
		if n.e != nil && n.e.trace != nil {
			formatTrace(&b.Builder, n.e.trace.pcs, "       ")
		} else {
			formatTrace(&b.Builder, currentPCs(), "       ")
		}
	}
	b.Printf("\nother info that might help us debug this:\n\n")
	source, target := path[len(path)-1].c, path[0].c
	parent := path[1].c
	if parent != source {
		b.Printf("Chain exists of:\n  %s --> %s --> %s\n\n", source.displayName(), parent.displayName(), target.displayName())
	}
	b.Printf(" Possible unsafe locking scenario:\n\n")
	b.Printf("       CPU0                    CPU1\n")
	b.Printf("       ----                    ----\n")
	op := "lock"
	if prev.Read != 0 {
		op = "rlock"
	}
	b.Printf("  %s(%s);\n", op, target.displayName())
	b.Printf("                               lock(%s);\n", parent.displayName())
	b.Printf("                               lock(%s);\n", target.displayName())
	op = "lock"
	if next.Read != 0 {
		op = "rlock"
	} else if sync {
		op = "sync"
	}
	b.Printf("  %s(%s);\n", op, source.displayName())
	b.Printf("\n *** DEADLOCK ***\n\n")
	b.HeldLocks()
	b.WriteString("\n")
	b.Backtrace()
	return b.Report()
}

// unlockBalanceReport is print_unlock_imbalance_bug.
func unlockBalanceReport(m *Map) *krules.Report {
	b := newReport(krules.BadUnlockBalance, "WARNING: bad unlock balance detected!")
	b.Header()
	f := stack.Caller(0)
	b.Printf("%s is trying to release lock (%s) at:\n", b.Who(), m.Name())
	b.Printf("[<%016x>] %s\n", f.PC, stack.FormatFrame(f))
	b.Printf("but there are no more locks to release!\n")
	b.Printf("\nother info that might help us debug this:\n")
	b.HeldLocks()
	b.WriteString("\n")
	b.Backtrace()
	return b.Report()
}

// nestedNotTakenReport is print_lock_nested_lock_not_held.
func nestedNotTakenReport(t *task.Task, hl *task.HeldLock) *krules.Report {
	b := newReport(krules.NestedLockNotTaken, "WARNING: Nested lock was not taken")
	b.Header()
	b.Printf("%s is trying to lock:\n", b.Who())
	b.WriteString(heldLine(hl))
	b.Printf("\nbut this task is not holding:\n")
	b.Printf("%s\n", (*Map)(hl.NestLock).Name())
	b.WriteString("\n")
	b.Backtrace()
	b.Printf("\nother info that might help us debug this:\n")
	b.HeldLocks()
	b.WriteString("\n")
	b.Backtrace()
	return b.Report()
}

// freedReport is print_freed_lock_bug.
func freedReport(h *task.HeldLock, from, to uintptr) *krules.Report {
	b := newReport(krules.HeldLockFreed, "WARNING: held lock freed!")
	b.Header()
	b.Printf("%s is freeing memory %016x-%016x, with a lock still held there!\n", b.Who(), from, to-1)
	b.WriteString(heldLine(h))
	b.HeldLocks()
	b.WriteString("\n")
	b.Backtrace()
	return b.Report()
}

// limitReport is print_lockdep_off: a MAX_* limit ran out.
func limitReport(msg string) *krules.Report {
	b := newReport(krules.LockdepLimit, msg)
	b.Printf("%s\nturning off the locking correctness validator.\n", msg)
	b.Dump()
	return b.Report()
}

// unregisteredKeyReport is lockdep_init_map_type's report for a key that is
// neither static nor registered: the BUG line, then its
// DEBUG_LOCKS_WARN_ON(1), which is a WARN() with its cut-here block.
func unregisteredKeyReport(k *Key) *krules.Report {
	msg := fmt.Sprintf("BUG: key %016x has not been registered!", uintptr(keyPtr(k)))
	r := warnf(krules.LockdepMisuse, "DEBUG_LOCKS_WARN_ON(1)")
	r.Headline = msg
	r.Text = msg + "\n" + r.Text
	return r
}

// depthReport is the MAX_LOCK_DEPTH report; the new lock is on the list.
// __lock_acquire lists every task's locks after the caller's
// (debug_show_all_locks), which, validation being off by then, prints only
// "INFO: lockdep is turned off.".
func depthReport(depth int) *krules.Report {
	const msg = "BUG: MAX_LOCK_DEPTH too low!"
	b := newReport(krules.LockdepLimit, msg)
	b.Printf("%s\nturning off the locking correctness validator.\n", msg)
	b.Printf("depth: %d  max: %d!\n", depth, MaxLockDepth)
	b.HeldLocks()
	b.WriteString(task.LockdepOff)
	b.Dump()
	return b.Report()
}

// invalidSubclassReport is look_up_lock_class's subclass check.
func invalidSubclassReport(sub int) *krules.Report {
	msg := fmt.Sprintf("BUG: looking up invalid subclass: %d", sub)
	b := newReport(krules.InvalidSubclass, msg)
	b.Printf("%s\nturning off the locking correctness validator.\n", msg)
	b.Dump()
	return b.Report()
}

// bfsReport is print_bfs_bug for a full queue.
func bfsReport() *krules.Report {
	r := warnf(krules.LockdepLimit, "lockdep bfs error:-1")
	r.Text = "Increase LOCKDEP_CIRCULAR_QUEUE_BITS to avoid this warning:\n" + r.Text
	return r
}
