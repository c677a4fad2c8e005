package dmafence

import (
	"context"
	"iter"
	"math/bits"
	"sync"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
)

// ReservationClass is reservation_ww_class, the class of every reservation
// object's lock. It is wait-die, as dma-resv.c's DEFINE_WD_CLASS makes it:
// a younger context that holds a reservation and finds another held by an
// older context backs off at once (ErrDeadlock) instead of waiting. Its
// lockdep classes are "reservation_ww_class_acquire" and
// "reservation_ww_class_mutex".
var ReservationClass = lockclass.NewWDClass("reservation_ww_class")

// Usage says what a fence in a reservation object is for:
// enum dma_resv_usage. Usages are ordered; asking for one returns the
// fences of that usage and of every lower one.
type Usage int

const (
	// UsageKernel is DMA_RESV_USAGE_KERNEL: memory management (moves,
	// clears) that everybody must wait for.
	UsageKernel Usage = iota
	// UsageWrite is DMA_RESV_USAGE_WRITE: implicit-sync writers.
	UsageWrite
	// UsageRead is DMA_RESV_USAGE_READ: implicit-sync readers.
	UsageRead
	// UsageBookkeep is DMA_RESV_USAGE_BOOKKEEP: everything else, which
	// only those who must know of all work (eviction, an MMU notifier)
	// wait for.
	UsageBookkeep
)

var usageNames = [...]string{"KERNEL", "WRITE", "READ", "BOOKKEEP"}

// String returns the usage's kernel name without the DMA_RESV_USAGE_ prefix.
func (u Usage) String() string {
	if u >= 0 && int(u) < len(usageNames) {
		return usageNames[u]
	}
	return "Usage(" + u64(uint64(u)) + ")"
}

type resvFence struct {
	f     *Fence
	usage Usage
}

// Resv is the kernel's struct dma_resv: a reservation object guarding a
// buffer, made of a WWMutex of ReservationClass and the fences of the work
// that uses the buffer. Changing the fences needs the lock; waiting for
// them and reading them do not (the kernel reads them under RCU). Make one
// with NewResv or Init a zero Resv; a Resv must not be copied.
type Resv struct {
	lock lockclass.WWMutex
	mu   sync.Mutex // guards fences for readers without the lock
	// fences has room for max entries: ReserveFences grows it so that
	// AddFence, which may run where allocation is not allowed, never
	// allocates.
	fences []resvFence
	max    int
}

// NewResv returns an initialised reservation object: dma_resv_init.
func NewResv() *Resv {
	r := new(Resv)
	r.Init()
	return r
}

// Init (re)initialises r: dma_resv_init. The first call in a validator
// generation primes lockdep with the kernel's boot-time order
// (dma_resv_lockdep, through lockclass.Validator.PrimeOnce), so it may
// sleep.
func (r *Resv) Init() {
	r.lock.Init(ReservationClass)
	r.fences, r.max = nil, 0
	primeLockdep()
}

// Lock locks r inside ctx (a context of ReservationClass; nil for a single
// object): dma_resv_lock. It returns ErrDeadlock or ErrAlready as
// WWMutex.Lock.
func (r *Resv) Lock(ctx *lockclass.WWAcquireCtx) error { return r.lock.Lock(ctx) }

// LockKillable is dma_resv_lock_interruptible.
func (r *Resv) LockKillable(kctx context.Context, ctx *lockclass.WWAcquireCtx) error {
	return r.lock.LockKillable(kctx, ctx)
}

// LockSlow is dma_resv_lock_slow: after backing off from ErrDeadlock.
func (r *Resv) LockSlow(ctx *lockclass.WWAcquireCtx) { r.lock.LockSlow(ctx) }

// LockSlowKillable is dma_resv_lock_slow_interruptible: LockSlow that gives
// up when kctx is done, returning kctx.Err(), as drm_exec takes the
// contended object with DRM_EXEC_INTERRUPTIBLE_WAIT.
func (r *Resv) LockSlowKillable(kctx context.Context, ctx *lockclass.WWAcquireCtx) error {
	return r.lock.LockSlowKillable(kctx, ctx)
}

// TryLock is dma_resv_trylock, without a context.
func (r *Resv) TryLock() bool { return r.lock.TryLock(nil) }

// Unlock is dma_resv_unlock. Reserved room not used is given up, as the
// kernel's debug builds do (dma_resv_reset_max_fences), so a missing
// ReserveFences is caught even when an earlier holder reserved plenty.
func (r *Resv) Unlock() {
	r.mu.Lock()
	r.max = len(r.fences)
	r.mu.Unlock()
	r.lock.Unlock()
}

// HeldBy reports whether r is locked through ctx:
// dma_resv_locking_ctx(obj) == ctx (see lockclass.WWMutex.HeldBy).
func (r *Resv) HeldBy(ctx *lockclass.WWAcquireCtx) bool { return r.lock.HeldBy(ctx) }

// AssertHeld warns unless the caller holds r: dma_resv_assert_held.
func (r *Resv) AssertHeld() { lockclass.AssertHeld(&r.lock) }

// WWMutex returns r's lock.
func (r *Resv) WWMutex() *lockclass.WWMutex { return &r.lock }

// ReserveFences makes room for n more fences: dma_resv_reserve_fences. The
// caller holds r. It allocates with GFP_KERNEL, so it may sleep and enter
// reclaim, and must come before the signalling section that adds the
// fences.
//
// It counts as the kernel does: if the room left holds n it does nothing;
// otherwise the new room is max(fences + n, twice the old room), or, with
// no room at all (a fresh object, or one whose room Unlock gave up while
// it had no fences), max(4, n rounded up to a power of two); and the
// signalled fences are dropped on the way, as the kernel's copy to the new
// list leaves them out. The kernel's list may have a few slots more, the
// rest of its kmalloc size class (ksize); krules does not count those, so
// it reports a missing reservation no later than the kernel would.
func (r *Resv) ReserveFences(n int) error {
	r.AssertHeld()
	gfp.MightAlloc(gfp.Kernel)
	r.mu.Lock()
	defer r.mu.Unlock()
	var room int
	if r.max != 0 {
		if len(r.fences)+n <= r.max {
			return nil
		}
		room = max(len(r.fences)+n, 2*r.max)
	} else {
		room = max(4, 1<<bits.Len(uint(max(n, 1)-1)))
	}
	grown := make([]resvFence, 0, room)
	for _, rf := range r.fences {
		if !rf.f.IsSignaled() {
			grown = append(grown, rf)
		}
	}
	r.fences, r.max = grown, room
	return nil
}

// AddFence adds f with usage: dma_resv_add_fence. The caller holds r and
// has reserved room. f itself, or an earlier fence of f's timeline, added
// with the same or a higher usage, and any signalled fence, is replaced by
// f instead of taking room; a different fence with f's sequence number is
// not, as dma_resv_add_fence's dma_fence_is_later_or_same compares the
// fences themselves before their numbers. Adding without room is the
// kernel's BUG_ON(fobj->num_fences >= fobj->max_fences), which stops the
// task; krules reports the condition, as its other BUG_ONs, with the
// oops's headline and taint (krules.Bug), turns lock debugging off as the
// oops's add_taint does, and adds the fence all the same. With room
// reserved AddFence does not allocate, so it may run in a signalling
// section.
func (r *Resv) AddFence(f *Fence, usage Usage) {
	r.AssertHeld()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, old := range r.fences {
		if old.f.context == f.context && old.usage >= usage && (old.f == f || f.IsLater(old.f)) || old.f.IsSignaled() {
			r.fences[i] = resvFence{f, usage}
			return
		}
	}
	if len(r.fences) >= r.max {
		krules.Emit(krules.Bug(krules.FenceMisuse,
			"BUG_ON(fobj->num_fences >= fobj->max_fences): dma_resv_add_fence: no room reserved (dma_resv_reserve_fences missing)", 1))
		lockclass.TaintNowUnreliable()
		r.max = len(r.fences) + 1
	}
	r.fences = append(r.fences, resvFence{f, usage})
}

// snapshot returns the fences of usage and lower.
func (r *Resv) snapshot(usage Usage) []resvFence {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []resvFence
	for _, rf := range r.fences {
		if rf.usage <= usage {
			out = append(out, rf)
		}
	}
	return out
}

// Fences iterates over the unsignalled fences of usage and every lower
// usage, with the usage each was added with: dma_resv_for_each_fence_unlocked.
// It needs no lock, as the kernel's walks the list under RCU; it walks the
// list as it was when the iteration began (where the kernel's would restart
// on a change) and, as dma_resv_iter_walk_unlocked, passes over a fence
// already signalled when it is reached. The lock holder's iterator,
// dma_resv_for_each_fence, which also yields signalled fences, has no
// counterpart.
func (r *Resv) Fences(usage Usage) iter.Seq2[*Fence, Usage] {
	return func(yield func(*Fence, Usage) bool) {
		for _, rf := range r.snapshot(usage) {
			if rf.f.IsSignaled() {
				continue
			}
			if !yield(rf.f, rf.usage) {
				return
			}
		}
	}
}

// TestSignaled reports whether every fence of usage and lower is
// signalled: dma_resv_test_signaled, which is true when the unlocked
// iteration yields nothing.
func (r *Resv) TestSignaled(usage Usage) bool {
	for range r.Fences(usage) {
		return false
	}
	return true
}

// WaitTimeout waits up to timeout for every fence of usage and lower:
// dma_resv_wait_timeout(intr = false). It needs no lock. It returns the
// time left (at least 1ns) once all are signalled, 0 on timeout; Forever
// waits without limit. Every fence it has to wait for is a Fence wait,
// annotated as such, given what is left of the timeout, and the first
// result that is not positive is returned, as the kernel's loop does: a
// negative timeout is reported by the first fence waited for, which
// returns InvalidTimeout, and comes back unchanged if there is none.
func (r *Resv) WaitTimeout(usage Usage, timeout time.Duration) time.Duration {
	left := timeout
	if left == 0 {
		left = 1 // dma_resv_wait_timeout's "timeout ? timeout : 1"
	}
	for f := range r.Fences(usage) {
		if left = f.WaitTimeout(left); left <= 0 {
			return left
		}
	}
	return left
}

// Wait waits for every fence of usage and lower or until ctx is done:
// dma_resv_wait_timeout(intr = true). It returns nil or ctx.Err().
func (r *Resv) Wait(ctx context.Context, usage Usage) error {
	for f := range r.Fences(usage) {
		if err := f.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}
