package lockclass

import (
	"unsafe"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
)

// release annotates a release of m by the calling goroutine (lock_release);
// t is its record if the caller knows it. It returns false if m was not
// held (reported when validation is on).
func release(m *Map, t *task.Task) bool {
	if t == nil {
		if !compiledIn {
			return false
		}
		t = task.Lookup()
	}
	if t != nil && popTop(t, m) {
		t.ReleaseIfEmpty()
		return true
	}
	return releaseSlow(m, t)
}

// popTop is release's cached path, small enough to be inlined into the
// unlock paths: m's entry is on top of t's stack, with no references or
// pins. It reports whether it popped it; the caller then releases the
// record if the stack is empty.
func popTop(t *task.Task, m *Map) bool { return popHeld(t, m) >= 0 }

// popHeld is popTop for the lock paths: it returns the depth left after
// the pop, or -1 if it did not pop. Only a depth of 0 can leave the record
// empty, so an inner lock's release skips ReleaseIfEmpty's test of every
// part of the record: 3 nested Mutex pairs 647 -> 617 instructions, a
// single pair 220 -> 219 (cachegrind, AMD EPYC (Zen 3, KVM)).
func popHeld(t *task.Task, m *Map) int {
	held := t.Lockdep.Held
	n := len(held) - 1
	// An entry stamped while lock_stat was on goes the slow way, which adds
	// its hold time: folded into the test it costs the unlock paths nothing.
	if n >= 0 {
		if h := &held[n]; h.Instance == unsafe.Pointer(m) && int64(h.References|uint32(h.PinCount))|h.Stamp == 0 {
			t.Lockdep.Held = held[:n] // before any other store: only the length changes
			t.Lockdep.ChainKey = h.PrevChainKey
			// The popped entry must not keep its lock, class, graph and
			// validator alive in an idle record: clear its pointers.
			h.Instance, h.Class, h.NestLock = nil, nil, nil
			return n
		}
	}
	return -1
}

// truncateHeld cuts t's held-lock stack to its first n entries and clears
// the entries cut off, as popTop clears the one it pops.
func truncateHeld(t *task.Task, n int) {
	held := t.Lockdep.Held
	t.Lockdep.Held = held[:n]
	clear(held[n:])
}

// releaseShared releases m for a holder the lock does not remember (readers,
// lock maps): the record is looked up.
func releaseShared(m *Map) {
	if compiledIn {
		release(m, nil)
	}
}

// releaseUntracked is the release of a lock whose holder the lock does not
// remember: a destroyed lock warns, an unlocked one is a double unlock
// (reported by the release).
//
//go:noinline
func releaseUntracked(m *Map, locked bool) {
	m.checkAlive()
	if !locked {
		releaseShared(m)
	}
}

// findHeld is find_held_lock: the topmost entry of m, or a reference-counted
// entry of m's class.
func findHeld(t *task.Task, m *Map) int {
	if t == nil {
		return -1
	}
	held := t.Lockdep.Held
	var c0 *class
	for i := len(held) - 1; i >= 0; i-- {
		h := &held[i]
		if h.Instance == unsafe.Pointer(m) {
			return i
		}
		if h.References > 0 {
			if c0 == nil {
				c0 = m.cache[0].Load()
				if c0 == nil {
					if cfg := m.cfg.Load(); cfg != nil {
						sub := cfg.sub
						c0 = cfg.validator().graph().lookup(cfg.key, sub)
					}
				}
			}
			if c0 != nil && h.Class == unsafe.Pointer(c0) {
				return i
			}
		}
	}
	return -1
}

// validating reports whether releases of m are checked now.
func (m *Map) validating(t *task.Task) bool {
	if !compiledIn || !enabled.Load() || t != nil && t.Lockdep.Off != 0 {
		return false
	}
	if cfg := m.cfg.Load(); cfg != nil && cfg.key == &noTrackKey {
		return false
	}
	return m.graph().enabled.Load()
}

//go:noinline
func releaseSlow(m *Map, t *task.Task) bool {
	if t != nil && releaseStamped(m, t) {
		return true
	}
	i := findHeld(t, m)
	if i < 0 {
		m.checkAlive()
		if m.untracked.Load() > 0 && m.untracked.Add(-1) >= 0 {
			// one of the acquisitions the validator did not follow
		} else if m.validating(t) && m.graph().reportable(false) {
			krules.Emit(unlockBalanceReport(m))
		}
		if t != nil {
			t.ReleaseIfEmpty()
		}
		return false
	}
	held := t.Lockdep.Held
	h := &held[i]
	var reps []*krules.Report
	if h.PinCount != 0 && m.validating(t) {
		reps = append(reps, warnf(krules.LockdepMisuse, "releasing a pinned lock"))
	}
	if h.References > 0 {
		h.References--
		if h.References > 0 {
			emitAll(reps)
			return true
		}
	}
	if h.Stamp != 0 {
		statReleased(h)
	}
	above := append([]task.HeldLock(nil), held[i+1:]...)
	t.Lockdep.ChainKey = h.PrevChainKey
	truncateHeld(t, i)
	reps = append(reps, rebuild(t, above)...)
	if len(t.Lockdep.Held) == 0 {
		t.ReleaseIfEmpty()
	}
	emitAll(reps)
	return true
}

func emitAll(reps []*krules.Report) {
	for _, r := range reps {
		emit(r)
	}
}
