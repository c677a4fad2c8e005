package lockclass

import (
	"unsafe"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
)

// Held-lock states (lock_is_held_type's results).
const (
	stateUnknown = -1 // validation is off: assertions pass
	stateNotHeld = 0
	stateHeld    = 1
)

// lockdepEnabled is lockdep_enabled() for goroutine record t (nil: none)
// and map m: validation on, m's validator still validating (debug_locks),
// and the goroutine not inside Off (lockdep_recursion). The held-lock
// queries and the pin calls return at once without it.
func lockdepEnabled(t *task.Task, m *Map) bool {
	return compiledIn && enabled.Load() && (t == nil || t.Lockdep.Off == 0) && m.graph().enabled.Load()
}

// heldState is lock_is_held_type: read -1 matches any mode, 0 a write hold,
// 1 any read hold.
func heldState(l Lockable, read int) int {
	m := l.lockdepMap()
	t := task.Lookup()
	if !lockdepEnabled(t, m) {
		return stateUnknown
	}
	i := findHeld(t, m)
	if i < 0 {
		return stateNotHeld
	}
	r := t.Lockdep.Held[i].Read
	if read == -1 || (r != 0) == (read == 1) {
		return stateHeld
	}
	return stateNotHeld
}

// IsHeld reports whether the calling goroutine holds l: lockdep_is_held.
// While validation is off the answer is unknown, and IsHeld says true, as
// the kernel's LOCK_STATE_UNKNOWN does in a condition.
func IsHeld(l Lockable) bool { return heldState(l, -1) != stateNotHeld }

// AssertHeld warns if the calling goroutine does not hold l:
// lockdep_assert_held.
func AssertHeld(l Lockable) {
	if heldState(l, -1) == stateNotHeld {
		krules.Emit(warnf(krules.LockdepMisuse, "lockdep_assert_held(%s): lock not held", l.lockdepMap().Name()))
	}
}

// AssertHeldWrite warns unless the calling goroutine holds l for writing:
// lockdep_assert_held_write.
func AssertHeldWrite(l Lockable) {
	if heldState(l, 0) == stateNotHeld {
		krules.Emit(warnf(krules.LockdepMisuse, "lockdep_assert_held_write(%s): lock not held for write", l.lockdepMap().Name()))
	}
}

// AssertHeldRead warns unless the calling goroutine holds l for reading:
// lockdep_assert_held_read.
func AssertHeldRead(l Lockable) {
	if heldState(l, 1) == stateNotHeld {
		krules.Emit(warnf(krules.LockdepMisuse, "lockdep_assert_held_read(%s): lock not held for read", l.lockdepMap().Name()))
	}
}

// AssertNotHeld warns if the calling goroutine holds l:
// lockdep_assert_not_held.
func AssertNotHeld(l Lockable) {
	if heldState(l, -1) == stateHeld {
		krules.Emit(warnf(krules.LockdepMisuse, "lockdep_assert_not_held(%s): lock held", l.lockdepMap().Name()))
	}
}

// AssertNoneHeld warns if the calling goroutine holds any lock:
// lockdep_assert_none_held_once. Like the kernel's (which tests debug_locks
// first) it stays quiet while validation is off, here: off for every
// validator whose locks the goroutine holds. Unlike the held assertions it
// does not look at lockdep_off (Off): the kernel's reads the task's
// lockdep_depth directly, so locks taken before an Off still count. It is
// WARN_ON_ONCE: each call site warns once per validator (the first whose
// locks are held), as each expansion of the macro has its own __warned.
//
//go:noinline
func AssertNoneHeld() {
	if !compiledIn || !enabled.Load() {
		return
	}
	t := task.Lookup()
	if t == nil || len(t.Lockdep.Held) == 0 {
		return
	}
	for i := range t.Lockdep.Held {
		if g := (*class)(t.Lockdep.Held[i].Class).g; g.enabled.Load() {
			if g.warnOnce(stack.ReturnPC()) {
				krules.Emit(warnf(krules.LockdepMisuse, "lockdep_assert_none_held_once(): %d locks held", len(t.Lockdep.Held)))
			}
			return
		}
	}
}

// CheckNoLocksFreed reports "WARNING: held lock freed!" if the calling
// goroutine holds a lock whose lock map overlaps [p, p+size):
// debug_check_no_locks_freed. The locks' Init and Destroy call it; code that
// recycles memory holding locks (a pool, an allocator) can too.
func CheckNoLocksFreed(p unsafe.Pointer, size uintptr) {
	if !compiledIn || !enabled.Load() {
		return
	}
	t := task.Lookup()
	if t == nil {
		return
	}
	// not_in_range: the lock map, not just its first byte, overlaps the
	// memory.
	from, to := uintptr(p), uintptr(p)+size
	for i := range t.Lockdep.Held {
		h := &t.Lockdep.Held[i]
		if a := uintptr(h.Instance); a < to && a+unsafe.Sizeof(Map{}) > from {
			g := (*class)(h.Class).g
			if g.enabled.Load() && g.reportable(false) {
				krules.Emit(freedReport(h, from, to))
			}
			return
		}
	}
}
