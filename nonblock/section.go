package nonblock

import (
	"runtime/trace"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
)

// The section entry and exit points find the record with its common case
// inline: the id read in place (task.GoID) and the caller's node at the head
// of its bucket, claimed by Start (task.ClaimHead) and read by End
// (task.PeekHead, with no busy test: an idle node's count is zero, and End
// then reports through task.Lookup). An id of 0 (not known yet, or a race
// build) matches no node and takes the slow way. Start records no entry
// site: the kernel keeps none, and the trace checker takes it from the
// section's region. On an AMD EPYC (Zen 3, KVM) this made a Start+End pair
// 168 -> 137 instructions (cachegrind, the benchmark loop's 23 included)
// and 17.3 -> 13.8 ns beside an empty call's 3.1 (bench figure
// "nonblock.Start+End", min of 15 alternating runs, noisy); two calls that
// each read the id and do nothing else cost 10.7 ns there.

// Start enters a non-block section on the calling goroutine: the kernel's
// non_block_start(). Until the matching End, every might-sleep check on this
// goroutine reports, and so does the trace checker if the goroutine really
// blocks (StartTraceCheck, krulestest.TraceCheck). Sections nest, and belong to the goroutine that
// entered them: only that goroutine can End them.
func Start() {
	t := task.ClaimHead(task.GoID())
	if t == nil {
		t = task.Current()
	}
	if t.NonBlock == 0 && task.SweepDue() {
		sweepExited()
	}
	t.NonBlock++
	t.Publish()
	if trace.IsEnabled() {
		openRegion(t, false, t.NonBlock)
	}
}

// End leaves the innermost non-block section: the kernel's non_block_end().
// An End without a Start on the calling goroutine is reported (WARN_ON in the
// kernel) and ignored; the count never goes below zero. That includes an End
// meant for a section another goroutine entered: it ends nothing, and that
// goroutine stays in its section.
func End() {
	// PeekHead's nil (the node is not at the head, or the id is unknown)
	// and an idle node's zero count both go to Lookup, which tells them
	// apart: one test on the fast path.
	t := task.PeekHead(task.GoID())
	if t == nil || t.NonBlock == 0 {
		if t = task.Lookup(); t == nil || t.NonBlock == 0 {
			krules.Emit(krules.Warn(krules.NonBlockImbalance,
				"nonblock.End() without nonblock.Start(): non_block_count was 0", 0))
			return
		}
	}
	t.NonBlock--
	if len(t.Regions) != 0 {
		closeRegion(t, false, t.NonBlock+1)
	}
	t.ReleaseIfEmpty()
}

// StartAtomic enters an atomic section on the calling goroutine: the
// kernel's preempt_disable(). Until the matching EndAtomic the goroutine is
// in_atomic() and every might-sleep check reports, with the site of the
// outermost StartAtomic as "Preemption disabled at:". Sections nest.
//
//go:noinline
func StartAtomic() {
	id, pc := task.SiteID() // one call for both
	t := task.ClaimHead(id)
	if t == nil {
		t = task.Current()
	}
	if t.Preempt == 0 {
		t.PreemptSite = pc
		if task.SweepDue() {
			sweepExited()
		}
	}
	t.Preempt++
	t.Publish()
	if trace.IsEnabled() {
		openRegion(t, true, t.Preempt)
	}
}

// EndAtomic leaves the innermost atomic section: preempt_enable(). An
// EndAtomic without a StartAtomic is reported and ignored.
func EndAtomic() {
	t := task.PeekHead(task.GoID()) // as in End
	if t == nil || t.Preempt == 0 {
		if t = task.Lookup(); t == nil || t.Preempt == 0 {
			krules.Emit(krules.Warn(krules.NonBlockImbalance,
				"nonblock.EndAtomic() without nonblock.StartAtomic(): preempt_count underflow", 0))
			return
		}
	}
	t.Preempt--
	if t.Preempt == 0 {
		t.PreemptSite = 0
	}
	if len(t.Regions) != 0 {
		closeRegion(t, true, t.Preempt+1)
	}
	t.ReleaseIfEmpty()
}

// InAtomic reports whether the calling goroutine is in an atomic section:
// the kernel's in_atomic().
func InAtomic() bool {
	t := task.Lookup()
	return t != nil && t.Preempt > 0
}

// InNonBlock reports whether the calling goroutine is in a non-block section.
func InNonBlock() bool {
	t := task.Lookup()
	return t != nil && t.NonBlock > 0
}

// sweepExited runs the sweep the task table asked for (task.SweepDue): a
// goroutine that returns inside a section leaves its record behind, and
// nothing else would reclaim it outside tests. The sweep runs on its own
// goroutine, since it dumps every goroutine's stack.
func sweepExited() {
	if task.TakeSweep() {
		go func() {
			defer task.Swept()
			krules.ReapExited()
		}()
	}
}
