package lockclass

import (
	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
)

// PinCookie identifies one pin of a held lock.
type PinCookie uint32

// Pin marks the held lock l as not to be released until Unpin
// (lockdep_pin_lock); releasing it meanwhile warns "releasing a pinned
// lock". Pinning a lock that is not held warns.
func Pin(l Lockable) PinCookie {
	t, i := heldEntry(l)
	if i < 0 {
		if IsEnabled() {
			krules.Emit(warnf(krules.LockdepMisuse, "pinning an unheld lock"))
		}
		return 0
	}
	c := PinCookie(nextID()&0xffff) + 1
	t.Lockdep.Held[i].PinCount += int32(c)
	return c
}

// Repin re-adds a pin taken earlier: lockdep_repin_lock. Like Pin, it
// says nothing while validation is off.
func Repin(l Lockable, c PinCookie) {
	t, i := heldEntry(l)
	if i < 0 {
		if IsEnabled() {
			krules.Emit(warnf(krules.LockdepMisuse, "pinning an unheld lock"))
		}
		return
	}
	t.Lockdep.Held[i].PinCount += int32(c)
}

// Unpin removes a pin: lockdep_unpin_lock. Like Pin, it says nothing
// while validation is off.
func Unpin(l Lockable, c PinCookie) {
	t, i := heldEntry(l)
	if i < 0 {
		if IsEnabled() {
			krules.Emit(warnf(krules.LockdepMisuse, "unpinning an unheld lock"))
		}
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

func heldEntry(l Lockable) (*task.Task, int) {
	if !compiledIn {
		return nil, -1
	}
	t := task.Lookup()
	return t, findHeld(t, l.lockdepMap())
}
