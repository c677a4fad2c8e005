package nonblock

import (
	"runtime/trace"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
)

// The section entry and exit points spell task.Current and task.Lookup out
// with their common case inline (the id read in place, the caller's node at
// the head of its bucket): that spares a Start+End pair four calls (Current,
// Claim, Lookup and goid.Get twice).

// Start enters a non-block section on the calling goroutine: the kernel's
// non_block_start(). Until the matching End, every might-sleep check on this
// goroutine reports, and so does the trace checker if the goroutine really
// blocks (StartTraceCheck, krulestest.TraceCheck). Sections nest, and belong to the goroutine that
// entered them: only that goroutine can End them.
//
//go:noinline
func Start() {
	var t *task.Task // task.Current, its common case inline
	if id := task.GoID(); id != 0 {
		t = task.ClaimHead(id)
	}
	if t == nil {
		t = task.Current()
	}
	if t.NonBlock == 0 {
		t.NonBlockSite = stack.ReturnPC()
		if task.SweepDue() {
			sweepExited()
		}
	}
	t.NonBlock++
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
	var t *task.Task // task.Lookup, its common case inline
	if id := task.GoID(); id != 0 {
		t = task.LookupHead(id)
	}
	if t == nil {
		t = task.Lookup()
	}
	if t == nil || t.NonBlock == 0 {
		krules.Emit(krules.Warn(krules.NonBlockImbalance,
			"nonblock.End() without nonblock.Start(): non_block_count was 0", 0))
		return
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
	var t *task.Task // task.Current, its common case inline
	if id := task.GoID(); id != 0 {
		t = task.ClaimHead(id)
	}
	if t == nil {
		t = task.Current()
	}
	if t.Preempt == 0 {
		t.PreemptSite = stack.ReturnPC()
		if task.SweepDue() {
			sweepExited()
		}
	}
	t.Preempt++
	if trace.IsEnabled() {
		openRegion(t, true, t.Preempt)
	}
}

// EndAtomic leaves the innermost atomic section: preempt_enable(). An
// EndAtomic without a StartAtomic is reported and ignored.
func EndAtomic() {
	var t *task.Task // task.Lookup, its common case inline
	if id := task.GoID(); id != 0 {
		t = task.LookupHead(id)
	}
	if t == nil {
		t = task.Lookup()
	}
	if t == nil || t.Preempt == 0 {
		krules.Emit(krules.Warn(krules.NonBlockImbalance,
			"nonblock.EndAtomic() without nonblock.StartAtomic(): preempt_count underflow", 0))
		return
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
