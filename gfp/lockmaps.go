package gfp

import "github.com/krules/krules/lockclass"

// FSReclaimMap is the kernel's __fs_reclaim_map, the lock map named
// "fs_reclaim" that stands for memory reclaim itself. Reclaim holds it for
// real while it runs shrinkers (direct reclaim when the allocation has FS,
// kswapd always), and MightAlloc acquires and releases it for every
// allocation that could enter reclaim with FS, so lockdep orders every lock
// held around such an allocation before reclaim and every lock taken by a
// shrinker after it. It belongs to the default validator, which tests reset
// with krulestest.ResetDefault.
//
// To order a held lock before reclaim by hand, call FSReclaimAcquire and
// FSReclaimRelease rather than acquiring this map directly: they also order
// fs_reclaim before NotifierMap, which MightAlloc relies on when it skips
// the maps for goroutines that hold no lock. Taking fs_reclaim first and
// then the shrinker's lock (priming, as drivers do at init) is fine either
// way.
var FSReclaimMap = lockclass.NewMap("fs_reclaim")

// NotifierMap is the kernel's __mmu_notifier_invalidate_range_start_map,
// named "mmu_notifier_invalidate_range_start": reclaim may invalidate page
// tables and so run MMU-notifier callbacks whenever it can run at all, so
// MightAlloc touches this map (acquire and release, inside fs_reclaim when
// FS is set) for every allocation that could reclaim, even GFP_NOIO. The
// MMU-notifier code holds it across invalidate_range_start callbacks, so a
// lock held around such an allocation and taken in a callback is a
// circular dependency.
var NotifierMap = lockclass.NewMap("mmu_notifier_invalidate_range_start")

// reclaimPrime is the priming of fs_reclaim -> NotifierMap, the dependency
// every might_alloc that may reclaim records in the kernel
// (__fs_reclaim_acquire's lock_map_acquire of the notifier map;
// __mmu_notifier_register did it explicitly in v5.4–v5.10).
var reclaimPrime lockclass.PrimeKey

// primeReclaim records fs_reclaim -> NotifierMap in the default validator,
// once per generation, with nothing held. MightAlloc skips the maps for a
// goroutine that holds no lock, so after a Reset the dependency would
// otherwise be missing until something allocated under a lock, and a
// GFP_KERNEL allocation in a notifier callback would be reported as
// recursive locking of the notifier map instead of the circular dependency.
func primeReclaim() {
	lockclass.Default().PrimeOnce(&reclaimPrime, func() {
		FSReclaimMap.Acquire()
		touchNotifierMap()
		FSReclaimMap.Release()
	})
}
