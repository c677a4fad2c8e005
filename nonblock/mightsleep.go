package nonblock

import (
	"github.com/krules/krules"
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
)

// MightSleep declares that the caller may block: the kernel's might_sleep().
// Inside an atomic or non-block section it reports
// "BUG: sleeping function called from invalid context at FILE:LINE", naming
// the first caller outside krules, with the goroutine's held locks, or only
// "INFO: lockdep is turned off." once the default lock validator has turned
// itself off (debug_show_held_locks). Printed reports are rate limited to one
// a second, as in the kernel (__might_resched's prev_jiffy); the rest are
// counted (krules.ReportStats). Reports a test claims (krulestest.Record,
// Check, krules.Collect) are not rate limited: a callback that sleeps twice
// gives two, where dmesg would show the first.
func MightSleep() {
	// The record read in place (task.GoID, task.Peek), not looked up (a
	// call, and goid.Get's): 63 -> 55 instructions outside sections (bench
	// figure "MightSleep outside sections", cachegrind, loop included, AMD
	// EPYC (Zen 3, KVM)). An idle node reads as outside every section.
	// Each way tests the record it found, rather than one test after both
	// ways joined, which cost a move and a jump: 56 -> 54, and an
	// invalidation with 1 notifier (two MightSleep calls) 737 -> 733.
	if id := task.GoID(); id != 0 {
		if t := task.Peek(id); t != nil && (t.NonBlock|t.Preempt) != 0 {
			reportSleep(t, 0)
		}
		return
	}
	if t := task.Lookup(); t != nil && (t.NonBlock|t.Preempt) != 0 {
		reportSleep(t, 0)
	}
}

// MightSleepIf calls MightSleep when cond is true: might_sleep_if().
func MightSleepIf(cond bool) {
	if cond {
		MightSleep()
	}
}

// MightResched is MightSleep for callers that legitimately hold
// expectedPreempt atomic sections, such as a helper that will drop a spin
// lock before it sleeps (the kernel's __might_resched with a preempt offset).
// The count must be exactly the expected one: fewer sections than expected
// are reported too, with no section at all among them.
func MightResched(expectedPreempt int) {
	t := task.Lookup()
	if t == nil { // outside every section
		if expectedPreempt != 0 {
			reportSleep(nil, int32(expectedPreempt))
		}
		return
	}
	if t.NonBlock != 0 || int(t.Preempt) != expectedPreempt {
		reportSleep(t, int32(expectedPreempt))
	}
}

// CantSleep asserts that the caller is in an atomic section: cant_sleep().
// Outside one it reports "BUG: assuming atomic context at FILE:LINE", with
// the held locks as MightSleep's report. It does not look at non-block
// sections, like the kernel.
func CantSleep() {
	if t := task.Lookup(); t == nil || t.Preempt == 0 {
		reportAssumeAtomic(t)
	}
}

func reportSleep(t *task.Task, expected int32) {
	site := stack.Caller(0)
	b := krules.NewReport(krules.SleepInAtomic,
		"BUG: sleeping function called from invalid context at "+stack.FileLineOf(site), 1)
	// A goroutine without a record (nil t) is outside every section.
	var preempt, nonBlock int32
	var preemptSite uintptr
	if t != nil {
		preempt, nonBlock, preemptSite = t.Preempt, t.NonBlock, t.PreemptSite
	}
	b.Printf("%s\n", b.Headline())
	b.Printf("in_atomic(): %d, irqs_disabled(): 0, non_block: %d, pid: %d, name: %s\n",
		boolInt(preempt > 0), nonBlock, b.ID(), b.Name())
	b.Printf("preempt_count: %x, expected: %x\n", preempt, expected)
	b.ShowHeldLocks()
	if preempt != expected {
		b.Printf("Preemption disabled at:\n%s\n", stack.FormatPC(preemptSite))
	}
	b.Dump()
	krules.Emit(b.Report())
}

func reportAssumeAtomic(t *task.Task) {
	site := stack.Caller(0)
	b := krules.NewReport(krules.AssumeAtomic, "BUG: assuming atomic context at "+stack.FileLineOf(site), 1)
	var preempt int32
	if t != nil {
		preempt = t.Preempt
	}
	b.Printf("%s\n", b.Headline())
	b.Printf("in_atomic(): %d, irqs_disabled(): 0, pid: %d, name: %s\n", boolInt(preempt > 0), b.ID(), b.Name())
	// No preempt_count line: __cant_sleep prints none, unlike
	// __might_resched (kernel/sched/core.c).
	b.ShowHeldLocks()
	b.Dump()
	krules.Emit(b.Report())
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}
