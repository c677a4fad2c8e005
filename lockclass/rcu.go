package lockclass

import (
	"github.com/krules/krules"
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/nonblock"
)

// RCU read sections under lockdep (include/linux/rcupdate.h,
// kernel/rcu/update.c), as a non-preemptible RCU kernel runs them: a read
// section is an atomic section (rcu_read_lock is preempt_disable), so
// anything that might sleep inside it is "BUG: sleeping function called
// from invalid context" with preempt_count 1 (a PREEMPT_RCU kernel would
// print an "RCU nest depth" line instead; krules models the other kind).
//
// rcuLockMap is the kernel's rcu_lock_map: named "rcu_read_lock", taken for
// recursive read by every outermost and nested RCUReadLock, with wait types
// {LD_WAIT_FREE:LD_WAIT_CONFIG}: it may be taken anywhere, and a sleeping
// lock inside it is an invalid wait context. As rcu_lock_acquire does, it
// is taken with check = 0 (fNoCheck): held, listed and counted in the chain
// key, but never ordered, so a lock taken inside a read section depends on
// the lock held outside it directly (check_prevs_add passes over the
// unchecked entry) and an ABBA across read sections is a cycle; its usage
// prints as the kernel's, {....}.
var rcuLockMap = NewMap("rcu_read_lock", waitTypes(waitConfig, waitFree), waitContext(ldWaitConfig, ldWaitFree))

// rcuState is the kernel's rcu_state: the grace periods and callbacks of
// RCURead sections.
var rcuState struct {
	gp gpCore
	cb callbacks
}

// RCUReadLock enters an RCU read section: rcu_read_lock(). Sections nest.
//
// The atomic section and the acquisition of rcuLockMap take one record,
// found once: the caller's node at the head of its bucket (task.ClaimHead),
// the section counted in it as rcu_read_lock inlines preempt_disable
// (task.TryStartAtomic), the map pushed inline in read mode 2 with check =
// 0 (uncheckedQuick: no chain to find, as nothing is validated); anything
// else goes the generic way (rcuAcquire, rcuReadLockSlow). The generic way found the record four times a pair
// (nonblock.StartAtomic, startAtomic's site, acquire, RCUReadUnlock's
// Lookup) and again in nonblock.EndAtomic: with RCUReadUnlock's cached
// path, the bench figure "RCUReadLock+Unlock" went from 539 to 269
// instructions (cachegrind, loop included; empty call 23) and from 45.0 to
// 22.1 ns (min of 10 runs, noisy; empty call 3.0-3.4), a signalling
// section being 258 and 20.9-25.1 ns there, on an AMD EPYC (Zen 3, KVM);
// RCUReadUnlock's record found without a busy test then took it to 261,
// and check = 0 (the push's own test, the empty stack's key, the Check
// store) back to 273.
// What a read pair does beyond a map pair is the atomic section and the
// grace-period counters' two locked adds.
//
//go:noinline
func RCUReadLock() {
	id, pc := task.SiteID()
	t := task.ClaimHead(id).TryStartAtomic(pc)
	if t == nil {
		rcuReadLockSlow(pc)
		return
	}
	m := rcuLockMap // once: the stores below would reload it
	if enabled.Load() {
		// The unchecked quick tier, spelled out as Mutex.Lock spells its
		// own: pushUnchecked, out of line, cost a read pair 25
		// instructions (cachegrind, AMD EPYC (Zen 3, KVM)).
		if c := m.cache[0].Load(); uncheckedQuick(t, c) {
			pushQuick(t, m, c, 2, pc, uncheckedKey(t, c, 2))
			t.Lockdep.Held[len(t.Lockdep.Held)-1].Check = false
			stampQuick(t)
			rcuEnter(t)
			return
		}
	}
	rcuAcquire(t, pc)
	rcuEnter(t)
}

// rcuReadLockSlow is RCUReadLock's whole way: the atomic section entered
// by nonblock (a trace region, a sweep, the goroutine id unknown, the node
// not at the head of its bucket), the map acquired by acquire.
//
//go:noinline
func rcuReadLockSlow(pc uintptr) {
	startAtomic(pc)
	// The map first: its acquisition finds the task record the count needs.
	t := acquire(rcuLockMap, 0, 2, fNoCheck, nil, pc, nil)
	if t == nil {
		if compiledIn {
			rcuLockMap.untracked.Add(1)
		}
		t = task.Current()
	}
	rcuEnter(t)
}

// rcuAcquire is the acquisition of rcuLockMap by t, in its atomic section,
// when the quick tiers did not take it: acquire's way with the record
// known.
//
//go:noinline
func rcuAcquire(t *task.Task, pc uintptr) {
	if !compiledIn {
		return
	}
	if !enabled.Load() || acquireSlow(t, rcuLockMap, 0, 2, fNoCheck, nil, pc, nil) == nil {
		rcuLockMap.untracked.Add(1)
	}
}

// rcuEnter counts a read section in t, the caller's record, and the
// outermost one in the grace-period counters.
func rcuEnter(t *task.Task) {
	if t.RCUNest++; t.RCUNest == 1 {
		t.RCUIdx = rcuState.gp.readLock()
	}
	t.Publish() // for -race: a goroutine may return in the section
}

// RCUReadUnlock leaves the innermost RCU read section: rcu_read_unlock().
// Without one, lockdep reports "WARNING: bad unlock balance detected!" for
// rcu_read_lock, as the kernel's rcu_lock_release does, and the goroutine's
// state is left alone.
//
// Its record is found as nonblock.End finds its own (task.PeekHead, with
// no busy test: an idle node counts no section, and releaseShared's
// lookup then tells it from a missing record; LookupHead's busy test cost
// a read pair 269 -> 261 instructions, cachegrind, AMD EPYC (Zen 3,
// KVM)), the map's entry popped from the top (popHeld; the record cannot
// be empty yet: the section is counted in it) and the atomic section left
// in the record (task.TryEndAtomic); anything else goes the generic way.
func RCUReadUnlock() {
	t := task.PeekHead(task.GoID()) // GoID's "unknown", 0, heads no bucket
	if t == nil {
		t = task.Lookup()
	}
	if t == nil || t.RCUNest == 0 {
		releaseShared(rcuLockMap)
		return
	}
	if compiledIn && popHeld(t, rcuLockMap) < 0 {
		releaseSlow(rcuLockMap, t)
	}
	if t.RCUNest--; t.RCUNest == 0 {
		rcuState.gp.readUnlock(t.RCUIdx)
	}
	if n := t.TryEndAtomic(); n == 0 {
		t.ReleaseIfEmpty()
	} else if n < 0 {
		nonblock.EndAtomic()
		// An underflow (the section ended by EndAtomic inside it) returns
		// without a look at the record the read section emptied.
		t.ReleaseIfEmpty()
	}
}

// RCUReadLockHeld reports whether the caller is in an RCU read section:
// rcu_read_lock_held(). Like the kernel's, it says true while validation is
// off.
func RCUReadLockHeld() bool {
	if heldState(rcuLockMap, -1) == stateUnknown {
		return true
	}
	t := task.Lookup()
	return t != nil && t.RCUNest > 0
}

// AssertInRCUReadLock warns outside an RCU read section:
// lockdep_assert_in_rcu_read_lock(), a WARN_ON_ONCE: each call site warns
// once per validator.
//
//go:noinline
func AssertInRCUReadLock() {
	if !RCUReadLockHeld() && rcuLockMap.graph().warnOnce(stack.ReturnPC()) {
		krules.Emit(warnf(krules.LockdepMisuse, "lockdep_assert_in_rcu_read_lock(): not in an RCU read-side critical section"))
	}
}

// SynchronizeRCU waits until every RCU read section that began before it
// has ended: synchronize_rcu(). Inside a read section it is "WARNING:
// suspicious RCU usage" ("Illegal synchronize_rcu() in RCU read-side
// critical section") and then, as it might sleep, might_sleep's BUG; it
// returns without waiting, since the caller's own section could never end.
func SynchronizeRCU() {
	if t := task.Lookup(); t != nil && t.RCUNest > 0 {
		rcuLockdepWarn(t, "synchronize_rcu", "Illegal synchronize_rcu() in RCU read-side critical section")
		nonblock.MightSleep()
		return
	}
	nonblock.MightSleep()
	rcuState.gp.waitForReaders()
}

// CallRCU runs f after a grace period, on a goroutine of its own and in an
// atomic section (the kernel runs callbacks in softirq context): call_rcu().
// It never sleeps. RCUBarrier waits for the callbacks queued.
func CallRCU(f func()) { rcuState.cb.queue(rcuState.gp.synchronize, f) }

// RCUBarrier waits for every callback CallRCU queued to have run:
// rcu_barrier().
func RCUBarrier() {
	nonblock.MightSleep()
	rcuState.cb.wg.Wait()
}

// rcuLockdepWarn is RCU_LOCKDEP_WARN for a condition that held at site (a
// name for a site inside lockclass): it warns only while lockdep looks
// (debug_lockdep_rcu_enabled: debug_locks, and t not inside Off), once per
// site (its static __warned). Unlike the lock-order reports it leaves
// validation on: v6.12's lockdep_rcu_suspicious does not call
// debug_locks_off.
func rcuLockdepWarn(t *task.Task, site, msg string) {
	if lockdepEnabled(t, rcuLockMap) && rcuLockMap.graph().warnOnce(site) {
		rcuSuspicious(msg)
	}
}

// rcuSuspicious is lockdep_rcu_suspicious's report: the site, the message,
// the scheduler and debug_locks state, the held locks, the backtrace. Only
// a validating goroutine warns, so the debug_locks it prints is 1.
func rcuSuspicious(msg string) {
	b := newReport(krules.SuspiciousRCU, "WARNING: suspicious RCU usage")
	b.Header()
	site := stack.Caller(0)
	b.Printf("%s %s!\n", stack.FileLineOf(site), msg)
	b.Printf("\nother info that might help us debug this:\n\n")
	b.Printf("\nrcu_scheduler_active = 2, debug_locks = 1\n")
	b.HeldLocks()
	b.WriteString("\n")
	b.Backtrace()
	krules.Emit(b.Report())
}
