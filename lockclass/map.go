package lockclass

import (
	"sync/atomic"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
)

// Map is a lockdep_map: what the validator knows of one lock instance. Every
// lock type embeds one; on its own it is a pseudo-lock that models a wait or
// a whole subsystem (fs_reclaim, the MMU notifier map, a workqueue's
// flush): acquiring it records the dependencies of everything held on it,
// without blocking.
//
// A Map made by NewMap without WithKey is its own key, like a static kernel
// map (STATIC_LOCKDEP_MAP_INIT): every Map is then its own class. The zero
// Map is usable and is keyed by the site of its first acquisition. A Map must
// not be copied.
type Map struct {
	_     noCopy
	cfg   atomic.Pointer[mapConfig]
	cache [2]atomic.Pointer[class] // subclasses 0 and 1 (class_cache)
	// lastChain is the key of the last validated chain this map's
	// acquisition ended, so that a lock taken again under the same locks
	// skips the chain-cache probe. Keys are random per class incarnation, so
	// a reset or zapped class can never make an old key match again.
	lastChain atomic.Uint64
	own       Key
	// untracked counts acquisitions the validator did not follow (taken
	// while the goroutine was in Off, say) by holders the map cannot name,
	// so their releases are not mistaken for unbalanced ones.
	untracked atomic.Int32
	stat      mapStat // lock_stat's last acquirer (lockstat.go)
}

// Lockable is anything the validator can name: a *Map or any lock of this
// package.
type Lockable interface {
	lockdepMap() *Map
}

func (m *Map) lockdepMap() *Map { return m }

// NewMap returns a lock map named name (lockdep_init_map). With no WithKey
// option the map is its own key.
func NewMap(name string, opts ...Option) *Map {
	m := new(Map)
	cfg := &mapConfig{key: &m.own, name: name}
	for _, o := range opts {
		o(cfg)
	}
	m.own.name, m.own.builtin = name, true
	m.cfg.Store(cfg)
	m.registerAtInit(0, nil) // the map has its config: no site needed
	return m
}

// init (re)initialises the map from a lock's Init call at site pc: the key is
// the site's unless an option names one (the kernel's init macros).
func (m *Map) init(pc uintptr, defaults []Option, opts []Option) {
	cfg := &mapConfig{site: pc}
	for _, o := range defaults {
		o(cfg)
	}
	for _, o := range opts {
		o(cfg)
	}
	if cfg.key == nil {
		cfg.key = siteKey(pc)
	}
	m.setConfig(cfg)
	m.registerAtInit(pc, defaults)
}

// registerAtInit registers the class of a map given a subclass when it is
// initialised, as lockdep_init_map_type does (register_lock_class(lock,
// subclass, 1)): the class exists before the lock is first taken, and
// /proc/lockdep_stats counts it among the "unused locks" until it is. A map
// of subclass 0 is registered at its first acquisition, as in the kernel.
// Once debug_locks is off nothing is registered; inside Off the kernel's
// DEBUG_LOCKS_WARN_ON(!lockdep_enabled()) fires and registers nothing.
func (m *Map) registerAtInit(pc uintptr, defaults []Option) {
	if !compiledIn || !enabled.Load() || m.cfg.Load().sub == 0 || !m.graph().enabled.Load() {
		return
	}
	if !lockdepEnabled(task.Lookup(), m) {
		if m.graph().reportable(false) {
			krules.Emit(warnf(krules.LockdepMisuse, "DEBUG_LOCKS_WARN_ON(!lockdep_enabled())"))
		}
		return
	}
	_, rep := m.resolve(0, pc, defaults)
	emit(rep)
}

func (m *Map) setConfig(cfg *mapConfig) {
	m.cfg.Store(cfg)
	m.cache[0].Store(nil)
	m.cache[1].Store(nil)
}

// config returns the map's configuration, creating the lazy one of a zero
// map keyed by the site pc of its first use.
func (m *Map) config(pc uintptr, defaults []Option) *mapConfig {
	if cfg := m.cfg.Load(); cfg != nil {
		return cfg
	}
	cfg := &mapConfig{site: pc}
	for _, o := range defaults {
		o(cfg)
	}
	cfg.key = siteKey(pc)
	if m.cfg.CompareAndSwap(nil, cfg) {
		return cfg
	}
	return m.cfg.Load()
}

func (cfg *mapConfig) validator() *Validator {
	if cfg.v != nil {
		return cfg.v
	}
	return defaultValidator
}

// Name returns the map's class name (without version or subclass).
func (m *Map) Name() string {
	cfg := m.cfg.Load()
	if cfg == nil {
		return "(uninitialised)"
	}
	if cfg.name != "" {
		return cfg.name
	}
	return cfg.key.name
}

// resolve returns the class for an acquisition of subclass sub at pc
// (look_up_lock_class/register_lock_class through the class cache), or a
// report to emit. A nil class with no report means "do not track".
func (m *Map) resolve(sub int, pc uintptr, defaults []Option) (*class, *krules.Report) {
	if sub >= 0 && sub < 2 {
		if c := m.cache[sub].Load(); c != nil && c.state.Load()&stStale == 0 {
			return c, nil
		}
	}
	cfg := m.config(pc, defaults)
	g := cfg.validator().graph()
	if cfg.dead != "" {
		// a destroyed lock is not validated (its magic is gone)
		if !g.reportable(false) {
			return nil, nil
		}
		return nil, warnf(krules.LockdepMisuse, "%s", cfg.dead)
	}
	eff := sub
	if sub == 0 {
		eff = cfg.sub
	}
	if eff < 0 || eff >= 8 {
		if !g.off() {
			return nil, nil
		}
		return nil, invalidSubclassReport(eff)
	}
	c, rep := g.register(cfg, cfg.key, eff)
	if c != nil && sub >= 0 && sub < 2 {
		m.cache[sub].Store(c)
	}
	return c, rep
}

// destroy marks the map's lock destroyed: its next acquisitions and
// releases print warning (see mapConfig.dead) until it is initialised again.
// Clearing the class cache sends them down the slow paths, which check it,
// so the cached paths pay nothing.
func (m *Map) destroy(pc uintptr, defaults []Option, warning string) {
	cfg := *m.config(pc, defaults)
	cfg.dead = warning
	m.setConfig(&cfg)
}

// checkAlive reports a use of a destroyed lock, once per validator as
// DEBUG_LOCKS_WARN_ON does (it turns debug_locks off).
func (m *Map) checkAlive() {
	if cfg := m.cfg.Load(); cfg != nil && cfg.dead != "" && m.graph().reportable(false) {
		krules.Emit(warnf(krules.LockdepMisuse, "%s", cfg.dead))
	}
}

func (m *Map) acquireShared(read uint8, fl uint8, pc uintptr) {
	if acquire(m, 0, read, fl, nil, pc, nil) == nil && compiledIn && fl&fSync == 0 {
		m.untracked.Add(1)
	}
}

// AcquireRead takes the map for recursive read: lock_map_acquire_read
// (read mode 2).
//
//go:noinline
func (m *Map) AcquireRead() { m.acquireShared(2, 0, stack.ReturnPC()) }

// AcquireSharedAt is AcquireShared for an annotation helper that takes the
// map on its caller's behalf: pc, the site lockdep's reports print as the
// holder's "at:", is the helper's return address (the kernel's _RET_IP_,
// which dma_fence_begin_signalling passes lock_acquire for dma_fence_map),
// as stack.ReturnPC gives it in the helper. It has AcquireShared's quick
// tiers.
func (m *Map) AcquireSharedAt(pc uintptr) { m.acquireQuick(1, pc) }

// AcquireAt is Acquire for an annotation helper that takes the map on its
// caller's behalf: pc is the site lockdep's reports print as the holder's
// "at:", the helper's return address (the kernel's _RET_IP_, which
// fs_reclaim_acquire passes lock_acquire_exclusive for __fs_reclaim_map).
// It has Acquire's quick tiers.
func (m *Map) AcquireAt(pc uintptr) { m.acquireQuick(0, pc) }

// TryAcquireShared is a successful shared trylock of the map
// (lock_acquire_shared with trylock set).
//
//go:noinline
func (m *Map) TryAcquireShared() { m.acquireShared(1, fTry, stack.ReturnPC()) }

// TryAcquire takes the map as a successful trylock: lock_map_acquire_try.
//
//go:noinline
func (m *Map) TryAcquire() { m.acquireShared(0, fTry, stack.ReturnPC()) }

// TryAcquireRead is lock_map_acquire_tryread.
//
//go:noinline
func (m *Map) TryAcquireRead() { m.acquireShared(2, fTry, stack.ReturnPC()) }

// Sync validates an acquisition of the map without creating a critical
// section (lock_map_sync): "wait for everybody who holds it" primitives use
// it, so holding something the holders need is caught.
//
//go:noinline
func (m *Map) Sync() { acquire(m, 0, 0, fSync, nil, stack.ReturnPC(), nil) }

// graph returns the graph m's acquisitions go to.
func (m *Map) graph() *graph {
	if cfg := m.cfg.Load(); cfg != nil {
		return cfg.validator().graph()
	}
	return defaultValidator.graph()
}
