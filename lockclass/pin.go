package lockclass

import (
	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
)

// PinCookie identifies one pin of a held lock.
type PinCookie uint32

// Pin marks the held lock l as not to be released until Unpin
// (lockdep_pin_lock); releasing it meanwhile warns "releasing a pinned
// lock". Pinning a lock that is not held warns. Like the kernel's, the pin
// calls do nothing, and Pin returns 0, while lockdep does not look:
// validation off, or the goroutine inside Off.
func Pin(l Lockable) PinCookie {
	t, i, on := heldEntry(l)
	if !on {
		return 0
	}
	if i < 0 {
		krules.Emit(warnf(krules.LockdepMisuse, "pinning an unheld lock"))
		return 0
	}
	c := PinCookie(nextID()&0xffff) + 1
	t.Lockdep.Held[i].PinCount += int32(c)
	return c
}

// Repin re-adds a pin taken earlier: lockdep_repin_lock.
func Repin(l Lockable, c PinCookie) {
	t, i, on := heldEntry(l)
	if !on {
		return
	}
	if i < 0 {
		krules.Emit(warnf(krules.LockdepMisuse, "pinning an unheld lock"))
		return
	}
	t.Lockdep.Held[i].PinCount += int32(c)
}

// Unpin removes a pin: lockdep_unpin_lock.
func Unpin(l Lockable, c PinCookie) {
	t, i, on := heldEntry(l)
	if !on {
		return
	}
	if i < 0 {
		krules.Emit(warnf(krules.LockdepMisuse, "unpinning an unheld lock"))
		return
	}
	h := &t.Lockdep.Held[i]
	if h.PinCount == 0 {
		krules.Emit(warnf(krules.LockdepMisuse, "unpinning an unpinned lock"))
		return
	}
	h.PinCount -= int32(c)
	if h.PinCount < 0 {
		h.PinCount = 0
		krules.Emit(warnf(krules.LockdepMisuse, "pin count corrupted"))
	}
}

// heldEntry returns the caller's record and the index of l's entry in it
// (-1 if l is not held), and whether lockdep looks at all
// (lockdepEnabled): lock_pin_lock, lock_repin_lock and lock_unpin_lock
// return at once when it does not.
func heldEntry(l Lockable) (t *task.Task, i int, on bool) {
	m := l.lockdepMap()
	t = task.Lookup()
	if !lockdepEnabled(t, m) {
		return t, -1, false
	}
	return t, findHeld(t, m), true
}
