package lockclass

import (
	"unsafe"

	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
)

// SetClass moves l to key's class, subclass 0 (lockdep_set_class; for a
// lock the caller holds, lock_set_class, which re-validates the locks
// taken after it).
//
// On a lock the caller does not hold, SetClass and its siblings are the
// lockdep_set_class* family: they re-key the lock for its next
// acquisitions, and a nonzero subclass becomes the lock's default (the
// kernel's class-cache abuse). On a lock the caller holds they are
// lock_set_class/lock_set_subclass: the held entry moves to the new class
// and subclass, but the lock itself is re-keyed with subclass 0
// (__lock_set_class re-initialises the map with subclass 0), so its next
// plain acquisition is subclass 0 of the new key. While the validator
// ignores the caller (Off) or has turned itself off (Validator.Enabled is
// false), they leave a held lock alone, its entry and its key both:
// lock_set_class returns at once when !lockdep_enabled(), before
// __lock_set_class re-initialises the map. An unheld lock is re-keyed
// whatever the validator's state, as lockdep_init_map_type sets the key
// before it looks at debug_locks. With validation switched off
// (SetEnabled(false), or compiled out) they do not look for a held entry:
// every lock is re-keyed as an unheld one, a nonzero subclass becoming its
// default.
//
//go:noinline
func SetClass(l Lockable, key *Key) { setClass(l, key, "", 0, stack.ReturnPC()) }

// SetClassAndName is lockdep_set_class_and_name.
//
//go:noinline
func SetClassAndName(l Lockable, key *Key, name string) {
	setClass(l, key, name, 0, stack.ReturnPC())
}

// SetClassAndSubclass is lockdep_set_class_and_subclass.
//
//go:noinline
func SetClassAndSubclass(l Lockable, key *Key, sub int) {
	setClass(l, key, "", sub, stack.ReturnPC())
}

// SetSubclass keeps l's key and makes sub its default subclass
// (lockdep_set_subclass); on a lock the caller holds it is
// lock_set_subclass, and sub is the held entry's alone (see SetClass).
//
//go:noinline
func SetSubclass(l Lockable, sub int) { setClass(l, nil, "", sub, stack.ReturnPC()) }

// SetNoValidateClass puts l in the no-validate class
// (lockdep_set_novalidate_class / lock_set_novalidate_class).
//
//go:noinline
func SetNoValidateClass(l Lockable) { setClass(l, &noValidateKey, "", 0, stack.ReturnPC()) }

// SetNoTrackClass puts an unheld l in the no-track class
// (lockdep_set_notrack_class).
//
//go:noinline
func SetNoTrackClass(l Lockable) { setClass(l, &noTrackKey, "", 0, stack.ReturnPC()) }

func setClass(l Lockable, key *Key, name string, sub int, pc uintptr) {
	m := l.lockdepMap()
	cfg := *m.config(pc, nil)
	if key != nil {
		cfg.key = key
	}
	if name != "" {
		cfg.name = name
	}
	cfg.sub = sub
	var t *task.Task
	if compiledIn && enabled.Load() {
		t = task.Lookup()
	}
	i := -1
	if t != nil {
		for j := len(t.Lockdep.Held) - 1; j >= 0; j-- {
			if t.Lockdep.Held[j].Instance == unsafe.Pointer(m) {
				i = j
				break
			}
		}
	}
	if i < 0 {
		// lockdep_set_class*: lockdep_init_map_type.
		m.setConfig(&cfg)
		return
	}
	// lock_set_class: nothing at all unless lockdep_enabled(), which is
	// false under lockdep_off (current->lockdep_recursion) and once
	// debug_locks is off.
	if t.Lockdep.Off != 0 || !cfg.validator().Enabled() {
		return
	}
	// __lock_set_class: lockdep_init_map_type(lock, ..., 0, ...), then
	// register_lock_class(lock, subclass, 0) for the held entry only. cfg
	// is a copy: a published config is never written.
	cfg.sub = 0
	m.setConfig(&cfg)
	c, rep := m.resolve(sub, pc, nil)
	emit(rep)
	if c == nil {
		return
	}
	held := t.Lockdep.Held
	above := append([]task.HeldLock(nil), held[i:]...)
	above[0].Class = unsafe.Pointer(c)
	t.Lockdep.ChainKey = held[i].PrevChainKey
	truncateHeld(t, i)
	emitAll(rebuild(t, above))
}
