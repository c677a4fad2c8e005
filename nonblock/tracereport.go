package nonblock

import (
	"fmt"
	"strings"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/splat"
	"github.com/krules/krules/internal/stack"
)

// report lays out a finding the way the kernel's schedule_debug() prints a
// schedule inside a section:
//
//	BUG: scheduling in a non-blocking section: NAME/GOID/DEPTH
//
// for a non-block section (non_block_count as the kernel's %i), or
//
//	BUG: scheduling while atomic: NAME/GOID/0xPREEMPT
//
// for an atomic section (__schedule_bug(), preempt_count as %08x), then what
// the goroutine blocked on (the kernel knows it from the call trace; the Go
// trace gives the reason), where the section was entered ("Non-block section
// entered at:", or the kernel's own "Modules linked in:" and "Preemption
// disabled at:"), and
// dump_stack() of the blocking stack.
func (f *finding) report() *krules.Report {
	who := krules.Goroutine{ID: f.goid, Name: f.name}
	if who.Name == "" {
		who.Name = splat.EntryName(f.pcs)
	}
	var headline string
	if f.atomic {
		headline = fmt.Sprintf("BUG: scheduling while atomic: %s/0x%08x", who, f.depth)
	} else {
		headline = fmt.Sprintf("BUG: scheduling in a non-blocking section: %s/%d", who, f.depth)
	}
	var b strings.Builder
	b.WriteString(headline)
	b.WriteByte('\n')
	fmt.Fprintf(&b, "blocked on: %s\n", f.blockedOn())
	if f.count > 1 {
		fmt.Fprintf(&b, "(the same block %d times in this section)\n", f.count)
	}
	if f.kind == krules.AllocBlockInNonBlock {
		b.WriteString("the Go runtime blocked the goroutine while it allocated: allocation may sleep in Go\n")
	}
	if f.atomic {
		// __schedule_bug calls print_modules after the held locks (the
		// trace knows none) and before the preemption site;
		// schedule_debug's non-block branch prints neither.
		b.WriteString(splat.Modules)
		b.WriteString("Preemption disabled at:\n")
	} else {
		b.WriteString("Non-block section entered at:\n")
	}
	b.WriteString(stack.FormatPC(f.entry))
	b.WriteByte('\n')
	if f.entry == 0 && f.traced != 0 {
		fmt.Fprintf(&b, "(entered before tracing began; innermost traced entry at %s)\n", stack.FormatPC(f.traced))
	}
	splat.Dump(&b, who.ID, who.Name, f.pcs)
	return &krules.Report{
		Kind:      f.kind,
		Headline:  headline,
		Text:      b.String(),
		Goroutine: who,
		Stack:     f.pcs,
	}
}

// blockedOn describes the block: the trace's reason, or the system call.
func (f *finding) blockedOn() string {
	if f.reason == "" {
		return fmt.Sprintf("syscall (lost its P; %v in the system call)", f.syscall.Round(time.Microsecond))
	}
	return f.reason
}
