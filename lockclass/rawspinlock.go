package lockclass

import (
	"sync/atomic"
	"unsafe"

	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/nonblock"
)

// RawSpinLock is the kernel's raw_spinlock_t (include/linux/spinlock_types_raw.h,
// wait type LD_WAIT_SPIN): a spin lock that spins even on PREEMPT_RT, where
// spinlock_t becomes a sleeping lock. It behaves as SpinLock does (an atomic
// section while held, real spinning); the difference is for the
// wait-context check: a Mutex or RWSem inside it is always an invalid wait
// context, and, with ProveRawLockNesting, so is a SpinLock or RWLock.
//
// Keys, classes and the zero value are as for Mutex.
type RawSpinLock struct {
	_     noCopy
	state atomic.Int32
	own   owner
	dep   Map
}

var rawSpinDefaults = []Option{waitTypes(waitSpin, 0), waitContext(ldWaitSpin, 0)}

func (l *RawSpinLock) lockdepMap() *Map { return &l.dep }

// Init (re)initialises the lock: raw_spin_lock_init.
//
//go:noinline
func (l *RawSpinLock) Init(opts ...Option) {
	pc := stack.ReturnPC()
	CheckNoLocksFreed(unsafe.Pointer(l), unsafe.Sizeof(*l))
	l.dep.init(pc, rawSpinDefaults, opts)
}

// Lock takes the lock: raw_spin_lock.
//
//go:noinline
func (l *RawSpinLock) Lock() { l.lock(0, nil, stack.ReturnPC()) }

// LockNested is raw_spin_lock_nested.
//
//go:noinline
func (l *RawSpinLock) LockNested(sub int) { l.lock(sub, nil, stack.ReturnPC()) }

// LockNestLock is raw_spin_lock_nest_lock.
//
//go:noinline
func (l *RawSpinLock) LockNestLock(nest Lockable) { l.lock(0, nest.lockdepMap(), stack.ReturnPC()) }

func (l *RawSpinLock) lock(sub int, nest *Map, pc uintptr) {
	startAtomic(pc)
	t := acquire(&l.dep, sub, 0, 0, nest, pc, rawSpinDefaults)
	spinUntil(&l.dep, func() bool { return l.state.CompareAndSwap(0, 1) }, func() bool { return l.state.Load() == 0 })
	if t != nil {
		l.own.set(t)
	}
}

// TryLock takes the lock if it is free: raw_spin_trylock.
//
//go:noinline
func (l *RawSpinLock) TryLock() bool {
	pc := stack.ReturnPC()
	startAtomic(pc)
	if !l.state.CompareAndSwap(0, 1) {
		nonblock.EndAtomic()
		return false
	}
	if t := acquire(&l.dep, 0, 0, fTry, nil, pc, rawSpinDefaults); t != nil {
		l.own.set(t)
	}
	return true
}

// Unlock releases the lock and leaves the atomic section: raw_spin_unlock.
func (l *RawSpinLock) Unlock() {
	if compiledIn {
		if !l.own.release(&l.dep) && enabled.Load() && l.state.Load() == 0 {
			releaseShared(&l.dep)
		}
	}
	if l.state.CompareAndSwap(1, 0) {
		nonblock.EndAtomic()
	}
}

// IsLocked reports whether the lock is held: raw_spin_is_locked.
func (l *RawSpinLock) IsLocked() bool { return l.state.Load() != 0 }
