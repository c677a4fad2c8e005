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
// lock inside it is an invalid wait context. Deviation: the kernel takes it
// with check = 0 (held, never ordered); Map has no such mode, so the read
// section's dependencies are recorded, which cannot close a cycle since a
// recursive read never ends a strong path into a reader.
var rcuLockMap = NewMap("rcu_read_lock", waitTypes(waitConfig, waitFree), waitContext(ldWaitConfig, ldWaitFree))

// rcuState is the kernel's rcu_state: the grace periods and callbacks of
// RCURead sections.
var rcuState struct {
	gp gpCore
	cb callbacks
}

// RCUReadLock enters an RCU read section: rcu_read_lock(). Sections nest.
//
//go:noinline
func RCUReadLock() {
	pc := stack.ReturnPC()
	startAtomic(pc)
	// The map first: its acquisition finds the task record the count needs.
	t := acquire(rcuLockMap, 0, 2, 0, nil, pc, nil)
	if t == nil {
		if compiledIn {
			rcuLockMap.untracked.Add(1)
		}
		t = task.Current()
	}
	if t.RCUNest++; t.RCUNest == 1 {
		t.RCUIdx = rcuState.gp.readLock()
	}
	t.Publish() // for -race: a goroutine may return in the section
}

// RCUReadUnlock leaves the innermost RCU read section: rcu_read_unlock().
// Without one, lockdep reports "WARNING: bad unlock balance detected!" for
// rcu_read_lock, as the kernel's rcu_lock_release does, and the goroutine's
// state is left alone.
func RCUReadUnlock() {
	t := task.Lookup()
	if t == nil || t.RCUNest == 0 {
		releaseShared(rcuLockMap)
		return
	}
	if compiledIn {
		release(rcuLockMap, t)
	}
	if t.RCUNest--; t.RCUNest == 0 {
		rcuState.gp.readUnlock(t.RCUIdx)
	}
	nonblock.EndAtomic()
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
// lockdep_assert_in_rcu_read_lock().
func AssertInRCUReadLock() {
	if !RCUReadLockHeld() {
		krules.Emit(warnf(krules.LockdepMisuse, "lockdep_assert_in_rcu_read_lock(): not in an RCU read-side critical section"))
	}
}

// SynchronizeRCU waits until every RCU read section that began before it
// has ended: synchronize_rcu(). It might sleep, and inside a read section
// it is "WARNING: suspicious RCU usage" ("Illegal synchronize_rcu() in RCU
// read-side critical section"); it then returns without waiting, since the
// caller's own section could never end.
func SynchronizeRCU() {
	if t := task.Lookup(); t != nil && t.RCUNest > 0 {
		rcuSuspicious(t, "Illegal synchronize_rcu() in RCU read-side critical section")
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

// rcuSuspicious is lockdep_rcu_suspicious: the site, the message, the
// scheduler and debug_locks state, the held locks, the backtrace.
func rcuSuspicious(t *task.Task, msg string) {
	b := newReport(krules.SuspiciousRCU, "WARNING: suspicious RCU usage")
	b.Header()
	site := stack.Caller(0)
	b.Printf("%s %s!\n", stack.FileLineOf(site), msg)
	b.Printf("\nother info that might help us debug this:\n\n")
	dl := 0
	if enabled.Load() && rcuLockMap.graph().enabled.Load() {
		dl = 1
	}
	b.Printf("\nrcu_scheduler_active = 2, debug_locks = %d\n", dl)
	b.HeldLocks()
	b.WriteString("\n")
	b.Backtrace()
	krules.Emit(b.Report())
}
