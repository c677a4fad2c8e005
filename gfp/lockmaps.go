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
