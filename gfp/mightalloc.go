package gfp

import (
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/nonblock"
)

// currentTask returns the calling goroutine's task record (nil if it has
// none) and its scope bits, with one lookup.
func currentTask() (*task.Task, TaskFlags) {
	if t := task.Lookup(); t != nil {
		return t, TaskFlags(t.Memalloc)
	}
	return nil, 0
}

// needReclaim is __need_reclaim: could an allocation with gfp (scopes
// applied) enter reclaim? Not without DirectReclaim, not under PF_MEMALLOC,
// and NoLockdep asks not to be tracked.
func needReclaim(gfp Flags, pf TaskFlags) bool {
	return gfp&(DirectReclaim|NoLockdep) == DirectReclaim && pf&PFMemalloc == 0
}

// MightAlloc declares that the caller may allocate with flags:
// might_alloc(). It applies the goroutine's scopes, then, if the allocation
// could enter reclaim, acquires and releases the fs_reclaim lock map (when
// FS is set) and touches the MMU-notifier map while holding it, so that
// every lock the caller holds is ordered before reclaim (a caller holding
// no lock has nothing to order, and skips this); and if flags allow
// blocking it checks that the caller may sleep. Every allocation in krules
// calls it; code that allocates some other way should too.
//
// It proves reclaim deadlocks without memory pressure: a lock held here and
// taken by a shrinker (which runs under fs_reclaim) is a circular
// dependency as soon as both have been seen. Reports name its caller as
// where fs_reclaim was taken ("at:"): might_alloc is inlined into it.
//
//go:noinline
func MightAlloc(flags Flags) {
	// task.Lookup with the id read in place and the bucket walked inline:
	// a goroutine without a task record (no section, no lock, no scope),
	// which has nothing to check, pays no call but GoID's: 62 -> 36
	// instructions (cachegrind, AMD EPYC (Zen 3, KVM)).
	var t *task.Task
	if id := task.GoID(); id != 0 {
		t = task.LookupID(id)
	} else {
		t = task.Lookup()
	}
	if t != nil {
		pf := TaskFlags(t.Memalloc)
		mightAllocTask(applyContext(flags, pf), t, pf, outerSite)
	}
}

// MightAllocAt is MightAlloc for an allocator that checks the flags on its
// caller's behalf, as mempool_alloc_noprof does (might_alloc is inlined
// there): pc, the site reports name as where fs_reclaim was taken ("at:"),
// is the allocator's return address (internal/stack.ReturnPC in it), so
// that they name the entry its user called, not the allocator's helper.
func MightAllocAt(flags Flags, pc uintptr) {
	// Looked up as MightAlloc does, spelled out in both: through one
	// helper, which is too big to inline, MightAlloc costs 44 -> 51
	// instructions (cachegrind, AMD EPYC (Zen 3, KVM)).
	var t *task.Task
	if id := task.GoID(); id != 0 {
		t = task.LookupID(id)
	} else {
		t = task.Lookup()
	}
	if t != nil {
		pf := TaskFlags(t.Memalloc)
		mightAllocTask(applyContext(flags, pf), t, pf, pc)
	}
}

// The sites mightAllocTask is told of that it finds itself: its caller's
// (callerSite) or its caller's caller's (outerSite). No code lives at
// addresses 0 and 1.
const (
	callerSite uintptr = 0
	outerSite  uintptr = 1
)

// mightAllocTask is MightAlloc with the scopes applied and the task looked
// up. site is fs_reclaim's "at:": a site in the allocator entry, which is
// its caller (callerSite: Zone.Alloc, Zone.Vmalloc) or its caller's caller
// (outerSite: MightAlloc's caller, Zone.AllocPages through
// allocPagesChecked), or given (MightAllocAt), as
// fs_reclaim_acquire takes the map with _RET_IP_, a site in the entry that
// might_alloc is inlined into (__alloc_pages_noprof, __kmalloc_noprof), not
// in an allocator helper.
//
// The lock maps are touched only when the goroutine holds a lock. With none
// held, the kernel's acquire/release pairs add one dependency,
// fs_reclaim → notifier map, and can close no cycle: every path back into
// fs_reclaim from a held lock comes from a MightAlloc or FSReclaimAcquire
// made with that lock held, which records fs_reclaim → notifier map itself,
// in the same step. Skipping them saves four validator operations (about
// 45 ns) on every allocation made without locks. (A raw
// FSReclaimMap.Acquire under a lock is the one way around that; prime with
// FSReclaimAcquire instead.) One step needs the dependency beforehand: under
// the notifier map itself (a GFP_KERNEL allocation in a callback) the step
// would meet the map again inside fs_reclaim and report recursive locking,
// not the cycle. So the first MightAlloc under a lock in each validator
// generation records fs_reclaim → notifier map first (primeReclaim), as the
// kernel's skipped allocations would have.
//
//go:noinline
func mightAllocTask(gfp Flags, t *task.Task, pf TaskFlags, site uintptr) {
	if t == nil {
		return // no sections, no locks: nothing to check
	}
	sleepy := (t.NonBlock | t.Preempt) != 0
	if len(t.Lockdep.Held) > 0 && needReclaim(gfp, pf) {
		primeReclaim() // what the skipped allocations would have recorded
		if gfp&FS != 0 {
			// The entry's site is read only here, under a lock, where
			// the maps are taken, not on every allocation: "gfp
			// order-0 pages, lock held" 1424 -> 1435 instructions
			// (cachegrind), 233 -> 241 ns (min of 8, noisy); "gfp
			// Alloc+Free 64 B" 452 -> 451; AMD EPYC (Zen 3, KVM).
			if site == outerSite {
				site = stack.OuterReturnPC()
			} else if site == callerSite {
				site = stack.ReturnPC()
			}
			FSReclaimMap.AcquireAt(site)
			touchNotifierMap()
			FSReclaimMap.Release()
		} else {
			touchNotifierMap()
		}
	}
	if sleepy && gfp&DirectReclaim != 0 {
		nonblock.MightSleep()
	}
}

// touchNotifierMap acquires and releases the MMU-notifier map: reclaim can
// invalidate page tables, which runs notifier callbacks, whenever it may
// run at all (not only with FS), so even GFP_NOIO is ordered before them.
func touchNotifierMap() {
	NotifierMap.Acquire()
	NotifierMap.Release()
}

// FSReclaimAcquire marks the caller as in reclaim for an allocation with
// flags: fs_reclaim_acquire(). With the goroutine's scopes applied, if the
// allocation could reclaim, it acquires the fs_reclaim map when FS is set
// (held until FSReclaimRelease) and touches the notifier map. Drivers call
// it at init to teach the validator what their shrinker does ("priming"):
//
//	gfp.FSReclaimAcquire(gfp.Kernel)
//	lockclass.MightLock(&dev.shrinkerLock)
//	gfp.FSReclaimRelease(gfp.Kernel)
//
// Reports name its caller as where fs_reclaim was taken ("at:"), as
// fs_reclaim_acquire passes __fs_reclaim_acquire its _RET_IP_.
//
//go:noinline
func FSReclaimAcquire(flags Flags) {
	pf := CurrentTaskFlags()
	gfp := applyContext(flags, pf)
	if needReclaim(gfp, pf) {
		if gfp&FS != 0 {
			FSReclaimMap.AcquireAt(stack.ReturnPC())
		}
		touchNotifierMap()
	}
}

// FSReclaimRelease ends what FSReclaimAcquire(flags) began:
// fs_reclaim_release(). It recomputes the same conditions, so the scopes
// must be the same as at the acquire.
func FSReclaimRelease(flags Flags) {
	pf := CurrentTaskFlags()
	gfp := applyContext(flags, pf)
	if needReclaim(gfp, pf) && gfp&FS != 0 {
		FSReclaimMap.Release()
	}
}
