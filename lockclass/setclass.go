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
// (lockdep_set_subclass / lock_set_subclass).
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
	truncateHeld(t, i)
	emitAll(rebuild(t, above))
}
