package lockclass

import (
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/nonblock"
)

// SpinLock is the kernel's spinlock_t (wait type LD_WAIT_CONFIG, printed
// {2:2} as in v6.12's default configuration): held, it puts the goroutine in
// an atomic section (nonblock.StartAtomic, the kernel's preempt_disable), so
// anything that might sleep inside it is the
// sleep-in-atomic BUG. It really spins, with backoff, yielding the processor
// after a short while since a Go holder can be descheduled.
//
// Keys, classes and the zero value are as for Mutex.
type SpinLock struct {
	_     noCopy
	state atomic.Int32
	// spinners counts the goroutines spinning in Lock: spin_is_contended
	// for CondResched.
	spinners atomic.Int32
	own      owner
	dep      Map
}

var spinDefaults = []Option{waitTypes(waitConfig, 0)}

func (l *SpinLock) lockdepMap() *Map { return &l.dep }

// Init (re)initialises the lock: spin_lock_init.
//
//go:noinline
func (l *SpinLock) Init(opts ...Option) {
	pc := stack.ReturnPC()
	CheckNoLocksFreed(unsafe.Pointer(l), unsafe.Sizeof(*l))
	l.dep.init(pc, spinDefaults, opts)
}

// Lock takes the lock: spin_lock.
//
//go:noinline
func (l *SpinLock) Lock() { l.lock(0, nil, stack.ReturnPC()) }

// LockNested is spin_lock_nested.
//
//go:noinline
func (l *SpinLock) LockNested(sub int) { l.lock(sub, nil, stack.ReturnPC()) }

// LockNestLock is spin_lock_nest_lock.
//
//go:noinline
func (l *SpinLock) LockNestLock(nest Lockable) { l.lock(0, nest.lockdepMap(), stack.ReturnPC()) }

func (l *SpinLock) lock(sub int, nest *Map, pc uintptr) {
	startAtomic(pc)
	t := acquire(&l.dep, sub, 0, 0, nest, pc, spinDefaults)
	if !l.state.CompareAndSwap(0, 1) {
		l.spinners.Add(1)
		spinUntil(&l.dep, func() bool { return l.state.CompareAndSwap(0, 1) }, func() bool { return l.state.Load() == 0 })
		l.spinners.Add(-1)
	}
	if t != nil {
		l.own.set(t)
	}
}

// TryLock takes the lock if it is free: spin_trylock.
//
//go:noinline
func (l *SpinLock) TryLock() bool {
	pc := stack.ReturnPC()
	startAtomic(pc)
	if !l.state.CompareAndSwap(0, 1) {
		nonblock.EndAtomic()
		return false
	}
	if t := acquire(&l.dep, 0, 0, fTry, nil, pc, spinDefaults); t != nil {
		l.own.set(t)
	}
	return true
}

// Unlock releases the lock and leaves the atomic section: spin_unlock.
func (l *SpinLock) Unlock() {
	if compiledIn {
		if !l.own.release(&l.dep) && enabled.Load() && l.state.Load() == 0 {
			releaseShared(&l.dep)
		}
	}
	if l.state.CompareAndSwap(1, 0) {
		nonblock.EndAtomic()
	}
}

// IsLocked reports whether the lock is held: spin_is_locked.
func (l *SpinLock) IsLocked() bool { return l.state.Load() != 0 }

// startAtomic enters the atomic section of a spinning lock and, like the
// kernel's get_lock_parent_ip, records the lock's caller rather than the
// lock function as where preemption was disabled.
func startAtomic(pc uintptr) {
	nonblock.StartAtomic()
	if t := task.Lookup(); t != nil && t.Preempt == 1 {
		t.PreemptSite = pc
	}
}

// spinUntil spins on take, testing ready between attempts with a growing
// backoff, and yields the processor once spinning has gone on for a while.
//
// A first attempt that fails is lock_stat's contention on dep
// (LOCK_CONTENDED in include/linux/lockdep.h).
func spinUntil(dep *Map, take, ready func() bool) {
	if take() {
		return
	}
	var cw contention
	if lockStat.Load() {
		cw = statContended(dep)
	}
	defer statWaited(dep, cw)
	for i := 1; !take(); i++ {
		if i < 10 {
			for j := 0; j < 1<<i && !ready(); j++ {
			}
			continue
		}
		runtime.Gosched()
	}
}
