package lockclass

import (
	"context"
	"sync"
	"unsafe"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/stack"
)

// RWSem is the kernel's struct rw_semaphore under lockdep: a sleeping
// reader-writer lock. Readers are non-recursive (read mode 1): a waiting
// writer blocks new readers, so a goroutine that takes the read side twice
// can deadlock, and lockdep reports it. Writers are fair, Downgrade turns a
// write hold into a read hold atomically, and the Killable variants give up
// when their context is done.
//
// Keys, classes and the zero value are as for Mutex. Read holds must be
// released by the goroutine that took them, except for the *NonOwner pair,
// which the validator does not follow (down_read_non_owner).
type RWSem struct {
	_    noCopy
	core core
	own  owner
	dep  Map
}

var rwsemDefaults = []Option{waitTypes(waitSleep, 0)}

func (s *RWSem) lockdepMap() *Map { return &s.dep }

// Init (re)initialises the semaphore: init_rwsem. The caller's source line
// becomes its class key unless an option names one.
//
//go:noinline
func (s *RWSem) Init(opts ...Option) {
	pc := stack.ReturnPC()
	CheckNoLocksFreed(unsafe.Pointer(s), unsafe.Sizeof(*s))
	s.dep.init(pc, rwsemDefaults, opts)
}

// Destroy declares the semaphore dead; destroying one the calling
// goroutine holds is reported as "held lock freed". Taking or releasing it
// afterwards, until the next Init, warns as DEBUG_RWSEMS does
// ("DEBUG_RWSEMS_WARN_ON(sem->magic != sem)") and is not validated.
//
//go:noinline
func (s *RWSem) Destroy() {
	CheckNoLocksFreed(unsafe.Pointer(s), unsafe.Sizeof(*s))
	if compiledIn {
		s.dep.destroy(stack.ReturnPC(), rwsemDefaults, "DEBUG_RWSEMS_WARN_ON(sem->magic != sem)")
	}
}

// Lock takes the write side: down_write.
//
//go:noinline
func (s *RWSem) Lock() { s.lock(nil, 0, nil, stack.ReturnPC()) }

// LockNested is down_write_nested.
//
//go:noinline
func (s *RWSem) LockNested(sub int) { s.lock(nil, sub, nil, stack.ReturnPC()) }

// LockNestLock is down_write_nest_lock.
//
//go:noinline
func (s *RWSem) LockNestLock(nest Lockable) { s.lock(nil, 0, nest.lockdepMap(), stack.ReturnPC()) }

// LockKillable is down_write_killable: it returns ctx.Err() if ctx is done
// before the lock is taken. A lock handed to it as ctx is done is kept, and
// it returns nil; so for RLockKillable.
//
//go:noinline
func (s *RWSem) LockKillable(ctx context.Context) error {
	return s.lock(ctx, 0, nil, stack.ReturnPC())
}

// LockNestedKillable is down_write_killable_nested.
//
//go:noinline
func (s *RWSem) LockNestedKillable(ctx context.Context, sub int) error {
	return s.lock(ctx, sub, nil, stack.ReturnPC())
}

func (s *RWSem) lock(ctx context.Context, sub int, nest *Map, pc uintptr) error {
	t := acquire(&s.dep, sub, 0, fSleep, nest, pc, rwsemDefaults)
	if err := s.core.lock(ctx, &s.dep); err != nil {
		if t != nil {
			release(&s.dep, t)
		}
		return err
	}
	if t != nil {
		s.own.set(t)
	}
	return nil
}

// TryLock takes the write side if it is free: down_write_trylock.
//
//go:noinline
func (s *RWSem) TryLock() bool {
	if !s.core.tryLock() {
		return false
	}
	if t := acquire(&s.dep, 0, 0, fTry, nil, stack.ReturnPC(), rwsemDefaults); t != nil {
		s.own.set(t)
	}
	return true
}

// Unlock releases the write side: up_write.
func (s *RWSem) Unlock() {
	if compiledIn && !s.own.release(&s.dep) && enabled.Load() {
		releaseUntracked(&s.dep, s.core.wlocked())
	}
	s.core.unlock()
}

// RLockNested is down_read_nested.
//
//go:noinline
func (s *RWSem) RLockNested(sub int) { s.rlock(nil, sub, stack.ReturnPC()) }

// RLockKillable is down_read_killable.
//
//go:noinline
func (s *RWSem) RLockKillable(ctx context.Context) error { return s.rlock(ctx, 0, stack.ReturnPC()) }

// RLockNestedKillable is down_read_killable_nested.
//
//go:noinline
func (s *RWSem) RLockNestedKillable(ctx context.Context, sub int) error {
	return s.rlock(ctx, sub, stack.ReturnPC())
}

func (s *RWSem) rlock(ctx context.Context, sub int, pc uintptr) error {
	t := acquire(&s.dep, sub, 1, fSleep, nil, pc, rwsemDefaults)
	if err := s.core.rlock(ctx, &s.dep); err != nil {
		if t != nil {
			release(&s.dep, t)
		}
		return err
	}
	if t == nil && compiledIn {
		s.dep.untracked.Add(1)
	}
	return nil
}

// TryRLock takes the read side if no writer holds or waits for it:
// down_read_trylock.
//
//go:noinline
func (s *RWSem) TryRLock() bool {
	if !s.core.tryRLock() {
		return false
	}
	if acquire(&s.dep, 0, 1, fTry, nil, stack.ReturnPC(), rwsemDefaults) == nil && compiledIn {
		s.dep.untracked.Add(1)
	}
	return true
}

// RLockNonOwner takes the read side without telling the validator, for a
// hold another goroutine will release with RUnlockNonOwner:
// down_read_non_owner.
func (s *RWSem) RLockNonOwner() {
	s.core.rlock(nil, &s.dep) //nolint:errcheck // no context, cannot fail
}

// RUnlockNonOwner releases a hold taken with RLockNonOwner, from any
// goroutine: up_read_non_owner. With no read hold to release it warns as
// DEBUG_RWSEMS does ("DEBUG_RWSEMS_WARN_ON(!is_rwsem_reader_owned(sem))")
// and leaves the semaphore alone. DEBUG_RWSEMS_WARN_ON is a WARN_ONCE that
// does not ask whether lockdep still validates, and then turns it off
// (debug_locks_off).
func (s *RWSem) RUnlockNonOwner() {
	if !s.core.runlock() && compiledIn && enabled.Load() {
		if g := s.dep.graph(); g.warnOnce("up_read_non_owner") {
			if !g.v.keepGoing {
				g.off()
			}
			krules.Emit(warnf(krules.LockdepMisuse, "DEBUG_RWSEMS_WARN_ON(!is_rwsem_reader_owned(sem))"))
		}
	}
}

// RLocker returns a sync.Locker whose Lock and Unlock are s's RLock and
// RUnlock, as sync.RWMutex.RLocker does.
func (s *RWSem) RLocker() sync.Locker { return (*rlocker)(s) }

type rlocker RWSem

func (r *rlocker) Lock()   { (*RWSem)(r).RLock() }
func (r *rlocker) Unlock() { (*RWSem)(r).RUnlock() }

// Downgrade turns the caller's write hold into a read hold without letting
// a writer in between, and wakes the readers queued behind it:
// downgrade_write.
//
//go:noinline
func (s *RWSem) Downgrade() {
	pc := stack.ReturnPC()
	tracked := s.own.id != 0
	s.own = owner{}
	if compiledIn && (tracked || enabled.Load() && !s.core.wlocked()) {
		downgrade(&s.dep, pc) // untracked and not write-locked: reported
	}
	if !tracked && compiledIn {
		s.dep.untracked.Add(1)
	}
	s.core.downgrade()
}

// IsLocked reports whether anybody holds the semaphore: rwsem_is_locked.
func (s *RWSem) IsLocked() bool { return s.core.locked() }
