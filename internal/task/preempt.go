package task

import "runtime/trace"

// TryStartAtomic is nonblock.StartAtomic's common case for a caller that
// has claimed its own record t (ClaimHead's result, nil included):
// preempt_count counted up and, for the outermost section, pc recorded as
// where preemption was disabled. It returns t, or nil, having changed
// nothing, when t is nil or the section needs what only nonblock does: a
// runtime/trace region (the tracer is on) or, for an outermost section,
// the sweep the table asked for (SweepDue); call nonblock.StartAtomic
// then. It is for lock paths that enter an atomic section and annotate a
// lock with the one record, as rcu_read_lock inlines preempt_disable
// (include/linux/rcupdate.h); nonblock.StartAtomic is the semantics it
// must keep. It returns the record rather than a bool, and takes a nil
// one, so that the inlined result is tested once, as Reclaim's is: an RCU
// read pair 270 -> 268 instructions (cachegrind, AMD EPYC (Zen 3, KVM)).
func (t *Task) TryStartAtomic(pc uintptr) *Task {
	if t != nil {
		if !trace.IsEnabled() {
			if t.Preempt == 0 {
				if SweepDue() {
					return nil
				}
				t.PreemptSite = pc
			}
			t.Preempt++
			return t
		}
	}
	return nil
}

// TryEndAtomic is nonblock.EndAtomic's common case for the owner of t:
// preempt_count counted down and the site cleared with the outermost
// section. It returns the count left, after which the caller drops the
// record if the count is 0 and that left it empty (ReleaseIfEmpty), or -1,
// having changed nothing, when t is in no atomic section (EndAtomic
// reports the underflow) or has trace regions open (EndAtomic ends them):
// call nonblock.EndAtomic then. Leaving ReleaseIfEmpty to the caller keeps
// it small enough to be inlined: with rcu_read_lock's quick tiers inline
// as well, an RCU read pair 285 -> 270 instructions (cachegrind, AMD EPYC
// (Zen 3, KVM)).
func (t *Task) TryEndAtomic() int32 {
	n := t.Preempt
	if n == 0 || len(t.Regions) != 0 {
		return -1
	}
	n--
	t.Preempt = n
	if n == 0 {
		t.PreemptSite = 0
	}
	return n
}
