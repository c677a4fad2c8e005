package lockclass

import "github.com/krules/krules/internal/stack"

// MightLock validates an acquisition of l without taking it (might_lock):
// everything held is recorded as taken before l, and the AA and cycle checks
// run, as if l were locked and unlocked at once.
//
//go:noinline
func MightLock(l Lockable) { mightLock(l, 0, 0, stack.ReturnPC()) }

// MightLockRead is might_lock_read (read mode 1).
//
//go:noinline
func MightLockRead(l Lockable) { mightLock(l, 0, 1, stack.ReturnPC()) }

// MightLockNested is might_lock_nested. As in v6.12 it validates a read
// acquisition (read mode 1) of subclass sub.
//
//go:noinline
func MightLockNested(l Lockable, sub int) { mightLock(l, sub, 1, stack.ReturnPC()) }

func mightLock(l Lockable, sub int, read uint8, pc uintptr) {
	m := l.lockdepMap()
	if t := acquire(m, sub, read, 0, nil, pc, nil); t != nil {
		release(m, t)
	}
}
