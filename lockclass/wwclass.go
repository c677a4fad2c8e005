package lockclass

import (
	"errors"
	"sync"
	"sync/atomic"
)

// ErrDeadlock is -EDEADLK from WWMutex.Lock: taking the lock could
// deadlock against an older acquire context (wait-die), or this context was
// wounded by an older one (wound-wait). The caller must unlock every
// WWMutex it holds in the context, take the contended lock with LockSlow,
// and start over.
var ErrDeadlock = errors.New("ww_mutex: would deadlock (EDEADLK): back off")

// ErrAlready is -EALREADY from WWMutex.Lock: the acquire context already
// holds the lock.
var ErrAlready = errors.New("ww_mutex: already held by this acquire context (EALREADY)")

// WWClass is the kernel's struct ww_class: the global stamp counter of a set
// of wound/wait mutexes and the two lockdep keys, one for the acquire
// contexts (named "NAME_acquire") and one for the mutexes ("NAME_mutex").
// Declare one per kind of object as a package-level variable with
// NewWWClass or NewWDClass, as the kernel's DEFINE_WW_CLASS and
// DEFINE_WD_CLASS; a class is never freed. A WWClass must not be copied.
type WWClass struct {
	_          noCopy
	stamp      atomic.Int64
	waitDie    bool
	name       string
	acquireKey Key
	mutexKey   Key
	wounds     wwWounds
	inject     atomic.Bool // SetInjectDeadlocks
}

// NewWWClass returns a wound-wait class: DEFINE_WW_CLASS. An older context
// that finds a lock held by a younger one wounds the holder, which backs off
// at its next lock that would wait; a younger context waits for an older
// holder.
func NewWWClass(name string) *WWClass { return newWWClass(name, false) }

// NewWDClass returns a wait-die class: DEFINE_WD_CLASS. A younger context
// that would wait for a lock held by an older one dies (ErrDeadlock) at
// once; an older one waits.
func NewWDClass(name string) *WWClass { return newWWClass(name, true) }

// SetInjectDeadlocks turns deadlock injection (see InjectDeadlocks) on or
// off for every context of the class initialised afterwards, with or
// without the option: CONFIG_DEBUG_WW_MUTEX_SLOWPATH, which the kernel
// builds into every ww_mutex, so that code making its own contexts (a
// drm_exec loop, a driver's ticket) runs its back-off paths in a test
// without passing the option through. Contexts already initialised keep
// their setting.
func (c *WWClass) SetInjectDeadlocks(on bool) { c.inject.Store(on) }

func newWWClass(name string, waitDie bool) *WWClass {
	c := &WWClass{waitDie: waitDie, name: name}
	c.acquireKey.name = name + "_acquire"
	c.mutexKey.name = name + "_mutex"
	// The keys live in the heap: register them, as the class lives as long
	// as the program (a DEFINE_WW_CLASS is static).
	RegisterKey(&c.acquireKey)
	RegisterKey(&c.mutexKey)
	return c
}

// Name returns the class name given to NewWWClass or NewWDClass.
func (c *WWClass) Name() string { return c.name }

// IsWaitDie reports whether the class is wait-die (else wound-wait).
func (c *WWClass) IsWaitDie() bool { return c.waitDie }

// AcquireKey and MutexKey return the class's lockdep keys
// (ww_class->acquire_key, ww_class->mutex_key), for a lock map that stands
// for the class in a priming sequence.
func (c *WWClass) AcquireKey() *Key { return &c.acquireKey }

// MutexKey returns the key every WWMutex of the class is validated under.
func (c *WWClass) MutexKey() *Key { return &c.mutexKey }

// wwWounds is where a wound-wait class keeps what __ww_mutex_wound does to
// a holder known only by the stamp in a WWMutex's state: the contexts of
// the class waiting for a lock, to mark and wake at once, and the stamps
// wounded while not waiting, for their next wait to find (the kernel's
// ctx->wounded, which __ww_mutex_check_kill tests only in a wait). Only
// the slow paths lock it; pending lets the others skip it.
type wwWounds struct {
	mu      sync.Mutex
	pending atomic.Int32 // len(wounded)
	wounded map[int64]struct{}
	waiting map[int64]*WWAcquireCtx
}

// wound wounds the context with stamp.
func (r *wwWounds) wound(stamp int64) {
	r.mu.Lock()
	if c := r.waiting[stamp]; c != nil {
		c.woundNow()
	} else {
		if r.wounded == nil {
			r.wounded = make(map[int64]struct{})
		}
		r.wounded[stamp] = struct{}{}
		r.pending.Store(int32(len(r.wounded)))
	}
	r.mu.Unlock()
}

// enter registers c, about to wait, and hands it a wound that came while
// it was not waiting.
func (r *wwWounds) enter(c *WWAcquireCtx) {
	r.mu.Lock()
	if r.waiting == nil {
		r.waiting = make(map[int64]*WWAcquireCtx)
	}
	r.waiting[c.stamp] = c
	if _, ok := r.wounded[c.stamp]; ok {
		delete(r.wounded, c.stamp)
		r.pending.Store(int32(len(r.wounded)))
		c.wounded.Store(true)
	}
	r.mu.Unlock()
}

// leave unregisters c at the end of its wait.
func (r *wwWounds) leave(c *WWAcquireCtx) {
	r.mu.Lock()
	delete(r.waiting, c.stamp)
	r.mu.Unlock()
}

// forget drops a wound of stamp that no wait took: the context reset its
// wound, or ended.
//
//go:noinline
func (r *wwWounds) forget(stamp int64) {
	r.mu.Lock()
	delete(r.wounded, stamp)
	r.pending.Store(int32(len(r.wounded)))
	r.mu.Unlock()
}

// has reports whether stamp was wounded while not waiting.
func (r *wwWounds) has(stamp int64) bool {
	if r.pending.Load() == 0 {
		return false
	}
	r.mu.Lock()
	_, ok := r.wounded[stamp]
	r.mu.Unlock()
	return ok
}
