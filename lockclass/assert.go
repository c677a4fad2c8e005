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

// heldState is lock_is_held_type: read -1 matches any mode, 0 a write hold,
// 1 any read hold.
func heldState(l Lockable, read int) int {
	m := l.lockdepMap()
	t := task.Lookup()
	if !compiledIn || !enabled.Load() || t != nil && t.Lockdep.Off != 0 || !m.graph().enabled.Load() {
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
// lockdep_assert_none_held_once.
func AssertNoneHeld() {
	if !compiledIn || !enabled.Load() {
		return
	}
	if t := task.Lookup(); t != nil && t.Lockdep.Off == 0 && len(t.Lockdep.Held) > 0 {
		krules.Emit(warnf(krules.LockdepMisuse, "lockdep_assert_none_held_once(): %d locks held", len(t.Lockdep.Held)))
	}
}

// CheckNoLocksFreed reports "WARNING: held lock freed!" if the calling
// goroutine holds a lock whose lock map lies in [p, p+size):
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
	from, to := uintptr(p), uintptr(p)+size
	for i := range t.Lockdep.Held {
		h := &t.Lockdep.Held[i]
		if a := uintptr(h.Instance); a >= from && a < to {
			g := (*class)(h.Class).g
			if g.enabled.Load() && g.reportable(false) {
				krules.Emit(freedReport(h, from, to))
			}
			return
		}
	}
}

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

// Repin re-adds a pin taken earlier: lockdep_repin_lock.
func Repin(l Lockable, c PinCookie) {
	t, i := heldEntry(l)
	if i < 0 {
		krules.Emit(warnf(krules.LockdepMisuse, "pinning an unheld lock"))
		return
	}
	t.Lockdep.Held[i].PinCount += int32(c)
}

// Unpin removes a pin: lockdep_unpin_lock.
func Unpin(l Lockable, c PinCookie) {
	t, i := heldEntry(l)
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

func heldEntry(l Lockable) (*task.Task, int) {
	if !compiledIn {
		return nil, -1
	}
	t := task.Lookup()
	return t, findHeld(t, l.lockdepMap())
}

// Off makes the validator ignore the calling goroutine until the matching
// On (lockdep_off); calls nest. Locks taken meanwhile are not tracked.
func Off() {
	if compiledIn {
		task.Current().Lockdep.Off++
	}
}

// On ends an Off (lockdep_on).
func On() {
	if !compiledIn {
		return
	}
	if t := task.Lookup(); t != nil && t.Lockdep.Off > 0 {
		t.Lockdep.Off--
		t.ReleaseIfEmpty()
	}
}

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

// SetClass moves l to key's class, subclass 0 (lockdep_set_class; for a
// lock the caller holds, lock_set_class, which re-validates the locks
// taken after it).
//
//go:noinline
func SetClass(l Lockable, key *Key) { setClass(l, key, "", 0, true, stack.ReturnPC()) }

// SetClassAndName is lockdep_set_class_and_name.
//
//go:noinline
func SetClassAndName(l Lockable, key *Key, name string) {
	setClass(l, key, name, 0, true, stack.ReturnPC())
}

// SetClassAndSubclass is lockdep_set_class_and_subclass.
//
//go:noinline
func SetClassAndSubclass(l Lockable, key *Key, sub int) {
	setClass(l, key, "", sub, true, stack.ReturnPC())
}

// SetSubclass keeps l's key and makes sub its default subclass
// (lockdep_set_subclass / lock_set_subclass).
//
//go:noinline
func SetSubclass(l Lockable, sub int) { setClass(l, nil, "", sub, true, stack.ReturnPC()) }

// SetNoValidateClass puts l in the no-validate class
// (lockdep_set_novalidate_class / lock_set_novalidate_class).
//
//go:noinline
func SetNoValidateClass(l Lockable) { setClass(l, &noValidateKey, "", 0, true, stack.ReturnPC()) }

// SetNoTrackClass puts an unheld l in the no-track class
// (lockdep_set_notrack_class).
//
//go:noinline
func SetNoTrackClass(l Lockable) { setClass(l, &noTrackKey, "", 0, true, stack.ReturnPC()) }

func setClass(l Lockable, key *Key, name string, sub int, _ bool, pc uintptr) {
	m := l.lockdepMap()
	cfg := *m.config(pc, nil)
	if key != nil {
		cfg.key = key
	}
	if name != "" {
		cfg.name = name
	}
	cfg.sub = sub
	m.setConfig(&cfg)
	if !compiledIn || !enabled.Load() {
		return
	}
	t := task.Lookup()
	if t == nil || t.Lockdep.Off != 0 {
		return
	}
	i := -1
	for j := len(t.Lockdep.Held) - 1; j >= 0; j-- {
		if t.Lockdep.Held[j].Instance == unsafe.Pointer(m) {
			i = j
			break
		}
	}
	if i < 0 {
		return
	}
	c, rep := m.resolve(0, pc, nil)
	emit(rep)
	if c == nil {
		return
	}
	held := t.Lockdep.Held
	above := append([]task.HeldLock(nil), held[i:]...)
	above[0].Class = unsafe.Pointer(c)
	t.Lockdep.ChainKey = held[i].PrevChainKey
	t.Lockdep.Held = held[:i]
	emitAll(rebuild(t, above))
}

// downgrade is lock_downgrade: the held write lock m becomes a read (mode
// 1) hold, and the locks above it are re-validated.
func downgrade(m *Map, pc uintptr) {
	if !compiledIn {
		return
	}
	t := task.Lookup()
	i := findHeld(t, m)
	if i < 0 {
		if m.validating(t) && m.graph().reportable(false) {
			krules.Emit(unlockBalanceReport(m))
		}
		return
	}
	held := t.Lockdep.Held
	var reps []*krules.Report
	if held[i].Read != 0 && m.validating(t) {
		reps = append(reps, warnf(krules.LockdepMisuse, "downgrading a read lock"))
	}
	above := append([]task.HeldLock(nil), held[i:]...)
	above[0].Read = 1
	above[0].Site = pc
	t.Lockdep.ChainKey = held[i].PrevChainKey
	t.Lockdep.Held = held[:i]
	reps = append(reps, rebuild(t, above)...)
	emitAll(reps)
}
