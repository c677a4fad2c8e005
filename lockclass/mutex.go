package lockclass

import (
	"context"
	"unsafe"

	"github.com/krules/krules/internal/stack"
)

// Mutex is the kernel's struct mutex under lockdep: a sleeping lock that
// implements sync.Locker. Lock calls might_sleep first (nonblock.MightSleep)
// and is annotated before it blocks, so an inversion is reported the first
// time both orders have been seen, whether or not they deadlock this time.
//
// Its class is the site of its Init call (every mutex initialised at one
// source line shares a class, like mutex_init), or an explicit Key. A zero
// Mutex is ready to use; without Init it is keyed by the site of its first
// acquisition. A Mutex must not be copied after first use, and must be
// unlocked by the goroutine that locked it (the kernel reports anything else
// as a bad unlock balance).
type Mutex struct {
	_    noCopy
	core core
	own  owner
	dep  Map
}

var mutexDefaults = []Option{waitTypes(waitSleep, 0)}

func (m *Mutex) lockdepMap() *Map { return &m.dep }

// Init (re)initialises the mutex: mutex_init. The caller's source line
// becomes its class key unless an option names one. Initialising a mutex
// the calling goroutine holds is reported as "held lock freed".
//
//go:noinline
func (m *Mutex) Init(opts ...Option) {
	pc := stack.ReturnPC()
	CheckNoLocksFreed(unsafe.Pointer(m), unsafe.Sizeof(*m))
	m.dep.init(pc, mutexDefaults, opts)
}

// Destroy declares the mutex dead: mutex_destroy. Destroying a mutex the
// calling goroutine holds is reported as "held lock freed"; locking or
// unlocking it afterwards, until the next Init, warns as DEBUG_MUTEXES does
// ("DEBUG_LOCKS_WARN_ON(lock->magic != lock)") and is not validated.
//
//go:noinline
func (m *Mutex) Destroy() {
	CheckNoLocksFreed(unsafe.Pointer(m), unsafe.Sizeof(*m))
	if compiledIn {
		m.dep.destroy(stack.ReturnPC(), mutexDefaults, "DEBUG_LOCKS_WARN_ON(lock->magic != lock)")
	}
}

// LockNested locks m as subclass sub (0–7): mutex_lock_nested, for taking
// two mutexes of one class in a known order.
//
//go:noinline
func (m *Mutex) LockNested(sub int) { m.lock(nil, sub, nil, stack.ReturnPC()) }

// LockNestLock locks m, declaring that the held lock nest serialises every
// acquisition of m's class: mutex_lock_nest_lock.
//
//go:noinline
func (m *Mutex) LockNestLock(nest Lockable) {
	m.lock(nil, 0, nest.lockdepMap(), stack.ReturnPC())
}

// LockKillable locks m unless ctx is done first: mutex_lock_killable. It
// returns ctx.Err() if it gave up; a lock handed to it as ctx is done is
// kept, and it returns nil.
//
//go:noinline
func (m *Mutex) LockKillable(ctx context.Context) error {
	return m.lock(ctx, 0, nil, stack.ReturnPC())
}

// LockNestedKillable is mutex_lock_killable_nested.
//
//go:noinline
func (m *Mutex) LockNestedKillable(ctx context.Context, sub int) error {
	return m.lock(ctx, sub, nil, stack.ReturnPC())
}

func (m *Mutex) lock(ctx context.Context, sub int, nest *Map, pc uintptr) error {
	t := acquire(&m.dep, sub, 0, fSleep, nest, pc, mutexDefaults)
	if ctx == nil {
		m.core.lock(nil, &m.dep)
	} else if err := m.core.lock(ctx, &m.dep); err != nil {
		if t != nil {
			release(&m.dep, t) // a failed killable lock annotates a release
		}
		return err
	}
	if t != nil {
		m.own.set(t)
	}
	return nil
}

// TryLock locks m if it is free and reports whether it did:
// mutex_trylock. A successful trylock is annotated after the fact and is
// never the target of a dependency.
//
//go:noinline
func (m *Mutex) TryLock() bool {
	if !m.core.tryLock() {
		return false
	}
	if compiledIn && enabled.Load() {
		if t := acquire(&m.dep, 0, 0, fTry, nil, stack.ReturnPC(), mutexDefaults); t != nil {
			m.own.set(t)
		}
	}
	return true
}

// IsLocked reports whether somebody holds m: mutex_is_locked.
func (m *Mutex) IsLocked() bool { return m.core.locked() }
