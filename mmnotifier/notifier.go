package mmnotifier

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sync/atomic"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// Notifier is an MMU notifier (struct mmu_notifier with its ops): a
// secondary MMU, such as a device that mirrors an address space, that must
// drop its mappings of a range before the address space changes it.
//
// InvalidateRangeStart is called while the range's pages are still mapped;
// when it returns, the notifier must have stopped using them. If the range
// is not Blockable (the OOM reaper), it runs inside a non-block section and
// must return ErrAgain instead of sleeping; any other failure, or a failure
// in a blockable range, is a WARNING.
//
// The other callbacks are optional interfaces: EndNotifier,
// ReleaseNotifier, ClearFlushYoungNotifier, ClearYoungNotifier,
// TestYoungNotifier and FreeNotifier. A notifier whose start can fail must not implement
// EndNotifier: it could not tell from its end whether its start failed
// (the kernel warns when one does).
type Notifier interface {
	InvalidateRangeStart(r *Range) error
}

// EndNotifier is a notifier with an invalidate_range_end callback, called
// after the range's pages are unmapped, with the same Range its start got.
// In a non-blockable range it runs inside a non-block section.
type EndNotifier interface {
	Notifier
	InvalidateRangeEnd(r *Range)
}

// ReleaseNotifier is a notifier with a release callback: called once,
// from Unregister or when the address space is torn down, before its pages
// are freed. It must tear down every secondary mapping. It may run
// concurrently with other callbacks.
type ReleaseNotifier interface {
	Notifier
	Release(mm *MM)
}

// ClearFlushYoungNotifier tests and clears the accessed bits of
// [start, end) in the secondary page tables and flushes
// (clear_flush_young). Results of all notifiers are ORed. It is called with
// the page-table lock held and must not sleep.
type ClearFlushYoungNotifier interface {
	Notifier
	ClearFlushYoung(mm *MM, start, end uint64) bool
}

// ClearYoungNotifier is clear_flush_young without the flush (clear_young).
type ClearYoungNotifier interface {
	Notifier
	ClearYoung(mm *MM, start, end uint64) bool
}

// TestYoungNotifier reports whether addr was accessed through the secondary
// MMU (test_young); the first true answer wins.
type TestYoungNotifier interface {
	Notifier
	TestYoung(mm *MM, addr uint64) bool
}

// FreeNotifier is a notifier with a free_notifier callback of its own: the
// last Put of a notifier registered with Register calls it after a grace
// period, in an atomic context (it must not sleep), as the kernel's
// mmu_notifier_put calls ops->free_notifier. A notifier from Get is freed
// by its Allocator instead. Without it, Put just drops the notifier.
type FreeNotifier interface {
	Notifier
	FreeNotifier()
}

// Allocator makes and frees the per-address-space notifier shared by Get
// and Put: the alloc_notifier and free_notifier ops. Get finds an existing
// subscription by comparing Allocators with ==, so an Allocator must be
// comparable (a pointer, typically). FreeNotifier runs after a grace period
// in an atomic context and must not sleep.
type Allocator interface {
	AllocNotifier(mm *MM) (Notifier, error)
	FreeNotifier(n Notifier)
}

// errNilNotifier refuses a nil notifier: registered, it would fault in
// the first invalidation.
var errNilNotifier = fmt.Errorf("mmnotifier: no notifier to register: %w", ErrInvalid)

// Subscription is one notifier registered on one address space, the handle
// Register and Get return.
type Subscription struct {
	n       Notifier
	end     EndNotifier
	release ReleaseNotifier
	cfy     ClearFlushYoungNotifier
	cy      ClearYoungNotifier
	ty      TestYoungNotifier
	free    FreeNotifier
	mm      *MM
	alloc   Allocator

	users  uint32      // Get/Put references (subscriptions lock)
	hashed atomic.Bool // on the list
	done   atomic.Bool // unregistered or put for the last time
}

// Notifier returns the registered notifier.
func (s *Subscription) Notifier() Notifier { return s.n }

// MM returns the address space the notifier is registered on.
func (s *Subscription) MM() *MM { return s.mm }

func newSubscription(n Notifier) *Subscription {
	s := &Subscription{n: n}
	s.end, _ = n.(EndNotifier)
	s.release, _ = n.(ReleaseNotifier)
	s.cfy, _ = n.(ClearFlushYoungNotifier)
	s.cy, _ = n.(ClearYoungNotifier)
	s.ty, _ = n.(TestYoungNotifier)
	s.free, _ = n.(FreeNotifier)
	return s
}

// RegisterOption configures Register.
type RegisterOption func(*registerConfig)

type registerConfig struct{ prime bool }

// PrimeLockdep makes Register teach the lock validator that notifier
// callbacks can run from reclaim, as v5.4–v5.10 kernels did at every
// registration ("mm/mmu_notifiers: prime lockdep"): with mmap_lock held it
// acquires fs_reclaim as for a GFP_KERNEL allocation, takes and drops the
// notifier map inside it, and releases fs_reclaim. So every lock a callback
// takes is ordered after fs_reclaim, and every lock the registering
// goroutine holds before it, from the registration on: a driver that
// registers under a lock its shrinker or its callbacks take hears of it
// then, not at its first allocation under that lock. Since v5.11 every
// allocation that may reclaim records the same dependencies
// (gfp.MightAlloc), and so does the first registration on an address space
// (it allocates), so without the option the report comes a little later.
func PrimeLockdep() RegisterOption { return func(c *registerConfig) { c.prime = true } }

// Register registers n on mm: mmu_notifier_register. It takes mmap_lock
// for writing, so the caller must not hold it; mm must have users (Get or
// be the caller's own). The newest notifier is called first. Unregister
// undoes it, or Put, as for a notifier from Get. A nil n is refused with
// an error wrapping ErrInvalid (the kernel's mmu_notifier_register(NULL,
// mm) only sets up the subscriptions, which InsertInterval does here).
func Register(mm *MM, n Notifier, opts ...RegisterOption) (*Subscription, error) {
	mm.mmapLock.Lock()
	defer mm.mmapLock.Unlock()
	return RegisterLocked(mm, n, opts...)
}

// RegisterLocked is Register for a caller that holds mmap_lock for
// writing: __mmu_notifier_register.
func RegisterLocked(mm *MM, n Notifier, opts ...RegisterOption) (*Subscription, error) {
	var cfg registerConfig
	for _, o := range opts {
		o(&cfg)
	}
	if n == nil {
		return nil, errNilNotifier
	}
	s := newSubscription(n)
	if err := register(mm, s, cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// register is __mmu_notifier_register; s == nil enables the interval tree.
func register(mm *MM, s *Subscription, cfg registerConfig) error {
	lockclass.AssertHeldWrite(&mm.mmapLock)
	if mm.users.Load() <= 0 {
		krules.Emit(krules.Bug(krules.NotifierMisuse,
			"BUG_ON(atomic_read(&mm->mm_users) <= 0): registering on "+mm.String()+", which has no users", 1))
		lockclass.TaintNowUnreliable()
		return ErrInvalid
	}
	if cfg.prime {
		gfp.FSReclaimAcquire(gfp.Kernel)
		gfp.NotifierMap.Acquire()
		gfp.NotifierMap.Release()
		gfp.FSReclaimRelease(gfp.Kernel)
	}
	subs := mm.subs.Load()
	if subs == nil {
		// kzalloc(GFP_KERNEL) under mmap_lock: nothing may be allocated
		// once every VMA lock is taken.
		gfp.MightAlloc(gfp.Kernel)
		subs = newSubscriptions()
		mm.subs.Store(subs)
	}
	// mm_take_all_locks: every path that invalidates holds mmap_lock from
	// start to end, so holding it for writing is enough here for no start
	// to miss this notifier and its end see it.
	if s == nil {
		subs.hasItree.Store(true)
		return nil
	}
	mm.grab()
	s.mm = mm
	s.users = 1
	subs.modifyList(func(list []*Subscription) []*Subscription {
		return slices.Insert(slices.Clone(list), 0, s)
	}, func([]*Subscription) { s.hashed.Store(true) })
	return nil
}

// Unregister removes a notifier registered with Register:
// mmu_notifier_unregister. If the address space has not already released
// it, its Release callback runs; then Unregister waits until no callback of
// any notifier that might still see it is running (a grace period), so
// after it returns none of its callbacks will run again. It may sleep, and
// must not be called from a callback: the validator reports that (lock_sync
// on the "srcu" map inside a read section of it) and Unregister returns
// without the grace period, where the kernel would deadlock.
func (s *Subscription) Unregister() {
	if s.mm == nil || s.done.Swap(true) {
		krules.Emit(krules.Warn(krules.NotifierMisuse, "mmu_notifier_unregister: notifier is not registered", 0))
		return
	}
	mm := s.mm
	if mm.count.Load() <= 0 {
		krules.Emit(krules.Bug(krules.NotifierMisuse, "BUG_ON(atomic_read(&mm->mm_count) <= 0)", 0))
		lockclass.TaintNowUnreliable()
	}
	if s.hashed.Load() {
		tok := srcu.readLock()
		if s.release != nil {
			s.release.Release(mm)
		}
		srcu.readUnlock(tok)
		mm.subs.Load().unhash(s)
	}
	srcu.synchronize()
	mm.drop()
}

// Get returns the notifier a's AllocNotifier made for mm, registering it
// the first time and counting a user each time: mmu_notifier_get. It takes
// mmap_lock for writing. Put drops the user; the last Put frees the
// notifier. A notifier obtained this way gets Release only when the
// address space is torn down.
func Get(mm *MM, a Allocator) (*Subscription, error) {
	mm.mmapLock.Lock()
	defer mm.mmapLock.Unlock()
	return GetLocked(mm, a)
}

// GetLocked is Get for a caller that holds mmap_lock for writing:
// mmu_notifier_get_locked.
func GetLocked(mm *MM, a Allocator) (*Subscription, error) {
	lockclass.AssertHeldWrite(&mm.mmapLock)
	if t := reflect.TypeOf(a); t == nil || !t.Comparable() {
		return nil, errors.New("mmnotifier: Get needs a comparable Allocator")
	}
	if subs := mm.subs.Load(); subs != nil {
		if s, err := subs.findGet(a); s != nil || err != nil {
			return s, err
		}
	}
	n, err := a.AllocNotifier(mm)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, errNilNotifier
	}
	s := newSubscription(n)
	s.alloc = a
	if err := register(mm, s, registerConfig{}); err != nil {
		a.FreeNotifier(n)
		return nil, err
	}
	return s, nil
}

// Put drops a user Get counted: mmu_notifier_put. A registration with
// Register counts as one user too, as in __mmu_notifier_register, so Put
// is also how a notifier that frees itself leaves (nouveau_svmm_fini). The
// last one unhashes the notifier and, after a grace period, calls the
// Allocator's FreeNotifier (for a notifier from Get) or the notifier's own
// (FreeNotifier, if it has one) in an atomic context, on a goroutine of
// its own. The caller must have dropped its secondary mappings first. Put
// may be called from Release. Synchronize waits for the frees. A Put with
// no user left, or after Unregister, is reported and ignored.
func (s *Subscription) Put() {
	if s.mm == nil {
		krules.Emit(krules.Warn(krules.NotifierMisuse, "mmu_notifier_put: notifier is not registered", 0))
		return
	}
	subs := s.mm.subs.Load()
	subs.lock.Lock()
	if s.users == 0 || s.done.Load() {
		subs.lock.Unlock()
		krules.Emit(krules.Warn(krules.NotifierMisuse, "WARN_ON(!subscription->users): mmu_notifier_put without a user", 0))
		return
	}
	s.users--
	if s.users > 0 {
		subs.lock.Unlock()
		return
	}
	s.done.Store(true)
	subs.lock.Unlock()
	subs.unhash(s) // findGet skips it meanwhile: it has no users
	mm, a, n, free := s.mm, s.alloc, s.n, s.free
	srcu.callSRCU(func() {
		nonblock.StartAtomic() // SRCU callbacks run with bottom halves off
		if a != nil {
			a.FreeNotifier(n)
		} else if free != nil {
			free.FreeNotifier()
		}
		nonblock.EndAtomic()
		mm.drop()
	})
}

// Synchronize waits for a grace period and for every free that Put has
// queued: mmu_notifier_synchronize. A module that used Get calls it before
// its code goes away; tests call it before checking for leaks.
func Synchronize() { srcu.barrier() }

// findGet is find_get_mmu_notifier: a hashed subscription of a, with one
// more user.
func (subs *subscriptions) findGet(a Allocator) (*Subscription, error) {
	subs.lock.Lock()
	defer subs.lock.Unlock()
	for _, s := range *subs.list.Load() {
		if s.alloc != a || s.users == 0 {
			continue
		}
		if s.users == math.MaxUint32 {
			return nil, ErrOverflow
		}
		s.users++
		return s, nil
	}
	return nil, nil
}

// unhash takes s off the list if it is still there (hlist_del_init_rcu).
func (subs *subscriptions) unhash(s *Subscription) {
	subs.modifyList(func(list []*Subscription) []*Subscription {
		return slices.DeleteFunc(slices.Clone(list), func(x *Subscription) bool { return x == s })
	}, func([]*Subscription) { s.hashed.Store(false) })
}

// modifyList replaces the list with edit's copy of it, and runs done with
// the old list, under the lock. The copy is made outside the lock, which is
// a spin lock (an atomic section, where allocating is not allowed), and made
// again if the list changed meanwhile.
func (subs *subscriptions) modifyList(edit func([]*Subscription) []*Subscription, done func(old []*Subscription)) {
	for {
		old := subs.list.Load()
		next := edit(*old)
		subs.lock.Lock()
		if subs.list.Load() == old {
			subs.list.Store(&next)
			done(*old)
			subs.lock.Unlock()
			return
		}
		subs.lock.Unlock()
	}
}

// release is __mmu_notifier_release, from exit_mmap: interval notifiers
// get a RELEASE invalidation of everything, list notifiers their Release,
// then the list is emptied and a grace period lets a Release that
// Unregister started finish before the pages go.
func (subs *subscriptions) release(mm *MM) {
	if subs.hasItree.Load() {
		subs.itreeRelease(mm)
	}
	list := *subs.list.Load()
	if len(list) == 0 {
		return
	}
	tok := srcu.readLock()
	for _, s := range list {
		if s.release != nil {
			s.release.Release(mm)
		}
	}
	subs.modifyList(func([]*Subscription) []*Subscription { return nil }, func(old []*Subscription) {
		for _, s := range old {
			s.hashed.Store(false)
		}
	})
	srcu.readUnlock(tok)
	srcu.synchronize()
}
