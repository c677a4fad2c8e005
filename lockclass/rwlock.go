package lockclass

import (
	"sync/atomic"
	"unsafe"

	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/nonblock"
)

// RWLock is the kernel's rwlock_t (wait type LD_WAIT_CONFIG, printed {2:2}
// as spinlock_t): a spinning reader-writer
// lock whose holders are in an atomic section. Readers are recursive (read
// mode 2), as lockdep's selftests treat them: a reader is only kept out by a
// writer that holds the lock, never by one that waits, so read_lock twice is
// safe and is not reported. Init with QueuedReaders for the queued rwlock
// of x86 and arm64 in process context, whose readers are not recursive.
//
// Keys, classes and the zero value are as for Mutex.
type RWLock struct {
	_     noCopy
	state atomic.Int32 // -1: a writer; n > 0: n readers
	// writers counts the writers spinning in Lock; a queued reader
	// (QueuedReaders) waits while there is one, as _QW_WAITING keeps
	// queued_read_lock_slowpath's readers out.
	writers atomic.Int32
	// readers counts the readers spinning in RLock: with writers, what
	// rwlock_is_contended sees (CondReschedRead, CondReschedWrite).
	readers atomic.Int32
	own     owner
	dep     Map
}

var rwlockDefaults = []Option{waitTypes(waitConfig, 0)}

func (l *RWLock) lockdepMap() *Map { return &l.dep }

// Init (re)initialises the lock: rwlock_init.
//
//go:noinline
func (l *RWLock) Init(opts ...Option) {
	pc := stack.ReturnPC()
	CheckNoLocksFreed(unsafe.Pointer(l), unsafe.Sizeof(*l))
	l.dep.init(pc, rwlockDefaults, opts)
}

// Lock takes the write side: write_lock.
//
//go:noinline
func (l *RWLock) Lock() { l.lock(stack.ReturnPC()) }

func (l *RWLock) lock(pc uintptr) {
	startAtomic(pc)
	t := acquire(&l.dep, 0, 0, 0, nil, pc, rwlockDefaults)
	if !l.state.CompareAndSwap(0, -1) {
		l.writers.Add(1)
		spinUntil(&l.dep, func() bool { return l.state.CompareAndSwap(0, -1) }, func() bool { return l.state.Load() == 0 })
		l.writers.Add(-1)
	}
	if t != nil {
		l.own.set(t)
	}
}

// TryLock is write_trylock.
//
//go:noinline
func (l *RWLock) TryLock() bool {
	pc := stack.ReturnPC()
	startAtomic(pc)
	if !l.state.CompareAndSwap(0, -1) {
		nonblock.EndAtomic()
		return false
	}
	if t := acquire(&l.dep, 0, 0, fTry, nil, pc, rwlockDefaults); t != nil {
		l.own.set(t)
	}
	return true
}

// Unlock releases the write side: write_unlock.
func (l *RWLock) Unlock() {
	if compiledIn {
		if !l.own.release(&l.dep) && enabled.Load() && l.state.Load() != -1 {
			releaseShared(&l.dep)
		}
	}
	if l.state.CompareAndSwap(-1, 0) {
		nonblock.EndAtomic()
	}
}

// RLock takes the read side: read_lock.
//
//go:noinline
func (l *RWLock) RLock() { l.rlock(stack.ReturnPC()) }

func (l *RWLock) rlock(pc uintptr) {
	startAtomic(pc)
	queued := l.queued()
	if acquire(&l.dep, 0, readMode(queued), 0, nil, pc, rwlockDefaults) == nil && compiledIn {
		l.dep.untracked.Add(1)
	}
	if queued {
		if !l.tryQueuedRead() {
			l.readers.Add(1)
			spinUntil(&l.dep, l.tryQueuedRead, func() bool { return l.state.Load() >= 0 && l.writers.Load() == 0 })
			l.readers.Add(-1)
		}
		return
	}
	if !l.tryRead() {
		l.readers.Add(1)
		spinUntil(&l.dep, l.tryRead, func() bool { return l.state.Load() >= 0 })
		l.readers.Add(-1)
	}
}

// queued reports whether the lock was initialised with QueuedReaders.
func (l *RWLock) queued() bool {
	cfg := l.dep.cfg.Load()
	return cfg != nil && cfg.queued
}

// readMode is the read argument rwlock_acquire_read passes: 2 (recursive)
// where read_lock_is_recursive holds, 1 for a queued rwlock in process
// context.
func readMode(queued bool) uint8 {
	if queued {
		return 1
	}
	return 2
}

// tryQueuedRead is queued_read_trylock: no read while a writer holds the
// lock or waits for it.
func (l *RWLock) tryQueuedRead() bool {
	return l.writers.Load() == 0 && l.tryRead()
}

func (l *RWLock) tryRead() bool {
	for {
		s := l.state.Load()
		if s < 0 {
			return false
		}
		if l.state.CompareAndSwap(s, s+1) {
			return true
		}
	}
}

// TryRLock is read_trylock.
//
//go:noinline
func (l *RWLock) TryRLock() bool {
	pc := stack.ReturnPC()
	startAtomic(pc)
	queued := l.queued()
	if queued && !l.tryQueuedRead() || !queued && !l.tryRead() {
		nonblock.EndAtomic()
		return false
	}
	if acquire(&l.dep, 0, readMode(queued), fTry, nil, pc, rwlockDefaults) == nil && compiledIn {
		l.dep.untracked.Add(1)
	}
	return true
}

// RUnlock releases a read hold: read_unlock.
func (l *RWLock) RUnlock() {
	releaseShared(&l.dep)
	for {
		s := l.state.Load()
		if s <= 0 {
			return // not read-locked: reported above, atomic section untouched
		}
		if l.state.CompareAndSwap(s, s-1) {
			nonblock.EndAtomic()
			return
		}
	}
}
