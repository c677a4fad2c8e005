package lockclass

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"
	"weak"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/nonblock"
)

// Key is a lock class key, the kernel's struct lock_class_key: its identity
// is its address, and it stands for eight classes, one per subclass. Declare
// one as a package-level variable and pass it with WithKey (or SetClass) to
// put locks initialised in different places into one class, or to split the
// locks initialised at one place into several. A Key inside a heap object is
// a dynamic key: RegisterKey it before use and UnregisterKey it before the
// object is dropped, which zaps its classes with every dependency and cached
// chain that mentions them (lockdep_register_key/lockdep_unregister_key).
//
// A Key that is neither static nor registered is reported as the kernel's
// "BUG: key … has not been registered!" when a lock first uses it, and the
// lock is not validated (lockdep_init_map_type, register_lock_class). Go has
// no static_obj(); krules decides as follows: a key is static if it lies in
// the executable's own mappings (its data and bss segments, where
// package-level variables live), read once from /proc/self/maps, or if it is
// one of the keys krules makes itself (a site's, a NewMap's own). Anything else, a Key in a
// heap object or a local variable whose address escapes, is dynamic. Where
// /proc/self/maps cannot be read every key counts as static.
//
// A Key must not be copied.
type Key struct {
	_    noCopy
	name string // the default class name of a site key
	site uintptr
	// builtin marks the keys krules makes itself (a site's, a NewMap's
	// own): static by construction, like the kernel's macro keys.
	builtin bool
}

// The kernel's special keys: __lockdep_no_validate__ and
// __lockdep_no_track__. Locks keyed with them share one class each.
var (
	noValidateKey = Key{name: "(no-validate)"}
	noTrackKey    = Key{name: "(no-track)"}
)

// siteKeys maps an initialisation or first-acquisition site to its key: the
// hidden static lock_class_key of the kernel's init macros, one per line.
var siteKeys sync.Map // uintptr -> *Key

// siteKey returns the key of the source line at pc (a return address).
func siteKey(pc uintptr) *Key {
	if k, ok := siteKeys.Load(pc); ok {
		return k.(*Key)
	}
	k := &Key{name: siteName(pc), site: pc, builtin: true}
	actual, _ := siteKeys.LoadOrStore(pc, k)
	return actual.(*Key)
}

// siteName names a site-keyed class after its source line, "dir/file.go:42",
// standing in for the stringified lock expression the kernel uses.
func siteName(pc uintptr) string {
	f, _ := runtime.CallersFrames([]uintptr{pc}).Next()
	if f.File == "" {
		return "lock@0x" + strconv.FormatUint(uint64(pc), 16)
	}
	return stack.ShortFile(f.File) + ":" + strconv.Itoa(f.Line)
}

// registeredKeys holds the dynamic keys (lockdep_register_key).
var registeredKeys sync.Map // *Key -> struct{}

// validators lists every validator, weakly, so UnregisterKey can zap a key's
// classes wherever they were registered.
var validators struct {
	mu      sync.Mutex
	list    []weak.Pointer[Validator]
	pruneAt int // prune the dead when the list reaches this length
}

// trackValidator adds v to the list in amortised O(1): the dead are pruned
// only when the list has doubled since the last pruning, so NewValidator
// does not get slower with every live validator.
func trackValidator(v *Validator) {
	validators.mu.Lock()
	defer validators.mu.Unlock()
	if len(validators.list) >= validators.pruneAt {
		live := validators.list[:0]
		for _, w := range validators.list {
			if w.Value() != nil {
				live = append(live, w)
			}
		}
		clear(validators.list[len(live):])
		validators.list = live
		validators.pruneAt = 2*len(live) + 16
	}
	validators.list = append(validators.list, weak.Make(v))
}

func allValidators() []*Validator {
	validators.mu.Lock()
	defer validators.mu.Unlock()
	var vs []*Validator
	for _, w := range validators.list {
		if v := w.Value(); v != nil {
			vs = append(vs, v)
		}
	}
	return vs
}

// RegisterKey registers a dynamic key before its first use:
// lockdep_register_key(). Registering a static key (a package-level Key, or
// one of the special keys) is a WARNING and leaves it alone
// (WARN_ON_ONCE(static_obj(key))); registering a key twice is a WARNING
// while validation is on (WARN_ON_ONCE(k == key), reached only once
// graph_lock has succeeded, so never with debug_locks off). Each is a
// WARN_ON_ONCE: it fires once per default validator, until that validator
// is reset, whichever key trips it.
func RegisterKey(k *Key) {
	if staticKey(k) {
		if keyWarnOnce("lockdep_register_key static_obj") {
			krules.Emit(warnf(krules.LockdepMisuse, "lockdep_register_key: key %p is static", k))
		}
		return
	}
	if _, dup := registeredKeys.LoadOrStore(k, struct{}{}); dup && keyValidating() &&
		keyWarnOnce("lockdep_register_key k == key") {
		krules.Emit(warnf(krules.LockdepMisuse, "lockdep_register_key: key %p registered twice", k))
	}
}

// keyValidating is what the key functions ask before a warning the kernel
// gives only with debug_locks on. Keys are global, as in the kernel; the
// default validator stands for its debug_locks.
func keyValidating() bool { return IsEnabled() && defaultValidator.Enabled() }

// keyWarnOnce is the WARN_ON_ONCE of a key function: the key functions
// belong to no validator, so the default validator keeps their __warned.
func keyWarnOnce(site string) bool { return defaultValidator.graph().warnOnce(site) }

// UnregisterKey drops a dynamic key before its memory goes away:
// lockdep_unregister_key(). It might sleep (it waits for an RCU grace
// period). Every class of the key (all subclasses, in every validator) is
// zapped together with the dependencies and cached chains that mention it;
// locks still using the key get fresh classes on their next acquisition.
// A static key is a WARNING and is left alone; a key that was not
// registered is a WARNING while validation is on, and is left alone too.
// Both are WARN_ON_ONCEs, once per default validator as RegisterKey's.
func UnregisterKey(k *Key) {
	nonblock.MightSleep()
	if staticKey(k) {
		if keyWarnOnce("lockdep_unregister_key static_obj") {
			krules.Emit(warnf(krules.LockdepMisuse, "lockdep_unregister_key: key %p is static", k))
		}
		return
	}
	if _, ok := registeredKeys.LoadAndDelete(k); !ok {
		// WARN_ON_ONCE(!found && debug_locks)
		if keyValidating() && keyWarnOnce("lockdep_unregister_key !found") {
			krules.Emit(warnf(krules.LockdepMisuse, "lockdep_unregister_key: key %p was not registered", k))
		}
		return
	}
	for _, v := range allValidators() {
		v.graph().zapKey(k)
	}
}

// staticKey is static_obj for a key: one krules made, a special key, or
// one in the executable's data. Where the mappings could not be read it
// says false for the rest, so that no registration is refused.
func staticKey(k *Key) bool {
	if k.builtin || k == &noValidateKey || k == &noTrackKey {
		return true
	}
	lo, hi := executableRange()
	a := uintptr(unsafe.Pointer(k))
	return lo != hi && a >= lo && a < hi
}

func keyPtr(k *Key) unsafe.Pointer { return unsafe.Pointer(k) }

// keyKnown reports whether k may key a class: static (static_obj) or
// registered (is_dynamic_key).
func keyKnown(k *Key) bool {
	if k.builtin {
		return true
	}
	lo, hi := executableRange()
	if a := uintptr(unsafe.Pointer(k)); lo == hi || a >= lo && a < hi {
		return true
	}
	_, ok := registeredKeys.Load(k)
	return ok
}

// executableRange is the address range of the executable's own mappings,
// extended by the anonymous mapping that follows them (the rest of bss): the
// kernel's _sdata.._end as static_obj tests it. It is empty if
// /proc/self/maps cannot be read.
var executableRange = sync.OnceValues(func() (lo, hi uintptr) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, 0
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(maps)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		from, to, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(from, 16, 64)
		b, err2 := strconv.ParseUint(to, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		switch {
		case len(f) >= 6 && f[5] == exe:
			if lo == 0 {
				lo = uintptr(a)
			}
			hi = uintptr(b)
		case len(f) < 6 && hi != 0 && uintptr(a) == hi:
			hi = uintptr(b) // bss beyond the file's pages
		}
	}
	return lo, hi
})
