//go:build !krules_nolockdep

package gfp_test

import (
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// lib/locking-selftest.c's fs_reclaim tests.
func TestFSReclaimSelftests(t *testing.T) {
	t.Run("correct nesting", func(t *testing.T) {
		krulestest.ResetDefault(t)
		krulestest.Check(t)
		gfp.FSReclaimAcquire(gfp.Kernel)
		gfp.MightAlloc(gfp.NoFS)
		gfp.FSReclaimRelease(gfp.Kernel)
	})
	t.Run("wrong nesting", func(t *testing.T) {
		krulestest.ResetDefault(t)
		rec := krulestest.Record(t)
		gfp.FSReclaimAcquire(gfp.Kernel)
		gfp.MightAlloc(gfp.Kernel)
		gfp.FSReclaimRelease(gfp.Kernel)
		require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
		require.Equal(t, "WARNING: possible recursive locking detected", rec.Last().Headline)
		require.Contains(t, rec.Last().Text, "fs_reclaim")
	})
	t.Run("protected nesting", func(t *testing.T) {
		krulestest.ResetDefault(t)
		krulestest.Check(t)
		gfp.FSReclaimAcquire(gfp.Kernel)
		flags := gfp.NoFSSave()
		gfp.MightAlloc(gfp.Kernel)
		gfp.NoFSRestore(flags)
		gfp.FSReclaimRelease(gfp.Kernel)
	})
	require.Nil(t, task.Lookup(), "nothing left held")
}

// lockShrinker takes l in Scan, as a driver's shrinker takes its own lock,
// and records whether fs_reclaim was held there.
func lockShrinker(l *lockclass.Mutex, underReclaim *atomic.Bool) *gfp.Shrinker {
	return &gfp.Shrinker{
		Name:  "driver",
		Count: func(*gfp.ShrinkControl) uint64 { return 1000 },
		Scan: func(*gfp.ShrinkControl) uint64 {
			underReclaim.Store(lockclass.IsHeld(gfp.FSReclaimMap))
			l.Lock()
			l.Unlock()
			return gfp.ShrinkStop
		},
	}
}

// The notifier-allocation deadlock at the allocator level: a lock held
// across a GFP_KERNEL allocation that a shrinker also takes. Lockdep proves
// it through fs_reclaim the first time both have happened, with no memory
// pressure at all; GFP_NOFS, a NoFS scope, GFP_NOIO or a PF_MEMALLOC scope
// (reclaim itself, which does not recurse) do not order the lock before
// fs_reclaim, and are not reported.
func TestLockHeldAcrossAllocationTakenByShrinker(t *testing.T) {
	cases := []struct {
		name   string
		flags  gfp.Flags
		scope  func() gfp.TaskFlags
		report bool
	}{
		{"GFP_KERNEL", gfp.Kernel, nil, true},
		{"GFP_KERNEL kmalloc", gfp.Kernel, nil, true},
		{"GFP_NOFS", gfp.NoFS, nil, false},
		{"NoFS scope", gfp.Kernel, gfp.NoFSSave, false},
		{"PF_MEMALLOC scope", gfp.Kernel, gfp.NoReclaimSave, false}, // reclaim does not recurse (__need_reclaim)
		{"GFP_NOIO", gfp.NoIO, nil, false},
		{"GFP_ATOMIC", gfp.Atomic, nil, false},
		{"GFP_KERNEL|__GFP_NOLOCKDEP", gfp.Kernel | gfp.NoLockdep, nil, false},
	}
	for _, c := range cases {
		for _, reclaimFirst := range []bool{true, false} {
			name := c.name + "/reclaim first"
			if !reclaimFirst {
				name = c.name + "/allocation first"
			}
			t.Run(name, func(t *testing.T) {
				krulestest.ResetDefault(t)
				rec := krulestest.Record(t)
				z := newZone(t, 4<<20)
				var l lockclass.Mutex
				l.Init(lockclass.WithName("&drv->lock"))
				var underReclaim atomic.Bool
				s := lockShrinker(&l, &underReclaim)
				require.NoError(t, z.RegisterShrinker(s))
				defer z.UnregisterShrinker(s)

				reclaim := func() {
					z.Reclaim(1, gfp.Kernel) // memory.reclaim: no pressure needed
					require.True(t, underReclaim.Load(), "shrinkers run under fs_reclaim")
				}
				alloc := func() {
					if c.scope != nil {
						s := c.scope()
						defer gfp.MemallocRestore(s)
					}
					l.Lock()
					defer l.Unlock()
					if c.name == "GFP_KERNEL kmalloc" {
						b, err := z.Alloc(100, c.flags)
						require.NoError(t, err, "no memory pressure")
						z.Free(b)
						return
					}
					p, err := z.AllocPages(0, c.flags)
					require.NoError(t, err, "no memory pressure")
					z.FreePages(p, 0)
				}
				if reclaimFirst {
					reclaim()
					alloc()
				} else {
					alloc()
					reclaim()
				}
				require.Zero(t, z.Stats().AllocStall, "the allocation never reclaimed")
				if !c.report {
					require.Zero(t, rec.Len())
					return
				}
				require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
				r := rec.Last()
				require.Equal(t, "WARNING: possible circular locking dependency detected", r.Headline)
				require.Contains(t, r.Text, "fs_reclaim")
				require.Contains(t, r.Text, "&drv->lock")
			})
		}
	}
}

// Drivers prime lockdep at init, as xe and panthor do: fs_reclaim →
// shrinker lock, learnt without running reclaim.
func TestPrimingFSReclaim(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	z := newZone(t, 1<<20)
	var l lockclass.Mutex
	l.Init(lockclass.WithName("&shrinker->lock"))
	gfp.FSReclaimAcquire(gfp.Kernel)
	lockclass.MightLock(&l)
	gfp.FSReclaimRelease(gfp.Kernel)
	require.Zero(t, rec.Len())

	l.Lock()
	b, err := z.Alloc(64, gfp.Kernel)
	l.Unlock()
	require.NoError(t, err)
	z.Free(b)
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
}

// Reclaim can fire MMU notifiers whenever it may run at all, so even a
// GFP_NOIO allocation with a lock held orders the lock before the notifier
// map; an invalidate_range_start callback taking that lock closes the
// cycle. GFP_ATOMIC cannot reclaim and is safe.
func TestLockHeldAcrossAllocationTakenByNotifier(t *testing.T) {
	for _, c := range []struct {
		flags  gfp.Flags
		report bool
	}{{gfp.NoIO, true}, {gfp.Kernel, true}, {gfp.Atomic, false}, {gfp.NoWait, false}} {
		t.Run(c.flags.String(), func(t *testing.T) {
			krulestest.ResetDefault(t)
			rec := krulestest.Record(t)
			var l lockclass.Mutex
			l.Init(lockclass.WithName("&svm->lock"))
			l.Lock()
			gfp.MightAlloc(c.flags)
			l.Unlock()
			lockInNotifier(&l)
			if c.report {
				require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
				require.Contains(t, rec.Last().Text, "mmu_notifier_invalidate_range_start")
			} else {
				require.Zero(t, rec.Len())
			}
		})
	}
}

// Allocating inside a notifier callback with GFP_KERNEL is what the
// notifier map exists to catch. It is the circular dependency
// notifier map -> fs_reclaim -> notifier map, as in a booted kernel where
// earlier allocations (fs_reclaim_acquire's touch of the notifier map)
// recorded fs_reclaim -> notifier map, even right after a reset, before
// anything allocated under a lock; not recursive locking of the map.
func TestAllocationInsideNotifierCallback(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	gfp.NotifierMap.Acquire()
	gfp.MightAlloc(gfp.Kernel)
	gfp.NotifierMap.Release()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "fs_reclaim")
}

// fs_reclaim_acquire touches the notifier map whenever the allocation may
// reclaim, with __GFP_FS or not: priming with GFP_NOIO under a lock orders
// that lock before the notifier map, so a notifier callback taking it
// closes a cycle.
func TestFSReclaimAcquireWithoutFSOrdersLocksBeforeNotifiers(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var l lockclass.Mutex
	l.Init(lockclass.WithName("&svm->lock"))
	l.Lock()
	gfp.FSReclaimAcquire(gfp.NoIO)
	gfp.FSReclaimRelease(gfp.NoIO)
	l.Unlock()
	lockInNotifier(&l)
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "mmu_notifier_invalidate_range_start")
}

// fs_reclaim_acquire applies current_gfp_context first: inside a
// memalloc_nofs_save scope a GFP_KERNEL acquire does not take fs_reclaim,
// so a lock held there is not ordered before reclaim and a shrinker taking
// it is fine.
func TestFSReclaimAcquireHonoursTheNoFSScope(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	var l lockclass.Mutex
	l.Init(lockclass.WithName("&shrinker->lock"))
	l.Lock()
	saved := gfp.NoFSSave()
	gfp.FSReclaimAcquire(gfp.Kernel)
	require.False(t, lockclass.IsHeld(gfp.FSReclaimMap), "no fs_reclaim in a NoFS scope")
	gfp.FSReclaimRelease(gfp.Kernel)
	gfp.NoFSRestore(saved)
	l.Unlock()
	gfp.FSReclaimAcquire(gfp.Kernel) // the shrinker's priming
	lockclass.MightLock(&l)
	gfp.FSReclaimRelease(gfp.Kernel)
	require.Nil(t, task.Lookup(), "nothing left held")
}

// Direct reclaim holds fs_reclaim only for allocations with FS.
func TestDirectReclaimHoldsFSReclaimForFS(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	z := newZone(t, 16<<20, gfp.WithMinFreeKbytes(1024), gfp.WithShards(1), gfp.WithoutKswapd())
	held := make(chan *gfp.Page, z.Pages())
	pages := pressure(t, z)
	for i := range 200 {
		held <- pages[i]
		pages[i] = nil // the shrinker's now
	}
	var active, underFSReclaim, ran atomic.Bool
	s := &gfp.Shrinker{
		Name: "probe",
		Count: func(*gfp.ShrinkControl) uint64 {
			if !active.Load() {
				return 0
			}
			return uint64(len(held))
		},
		Scan: func(sc *gfp.ShrinkControl) uint64 {
			underFSReclaim.Store(lockclass.IsHeld(gfp.FSReclaimMap))
			ran.Store(true)
			select {
			case p := <-held:
				z.FreePages(p, 0)
				return 1
			default:
				return 0
			}
		},
	}
	require.NoError(t, z.RegisterShrinker(s))
	defer z.UnregisterShrinker(s)
	defer func() {
		close(held)
		for p := range held {
			z.FreePages(p, 0)
		}
	}()

	for _, c := range []struct {
		flags gfp.Flags
		held  bool
	}{{gfp.NoFS, false}, {gfp.Kernel, true}, {gfp.NoIO, false}, {gfp.Kernel, true}} {
		ran.Store(false)
		active.Store(true)
		p, err := z.AllocPages(0, c.flags&^gfp.KswapdReclaim)
		require.NoError(t, err)
		require.True(t, ran.Load(), "%v reclaimed", c.flags)
		require.Equal(t, c.held, underFSReclaim.Load(), "%v", c.flags)
		z.FreePages(p, 0)
		// Back down to min for the next case, the shrinker asleep.
		active.Store(false)
		for _, p := range drainTo(t, z, gfp.Kernel&^gfp.KswapdReclaim|gfp.NoWarn) {
			held <- p
		}
	}
	require.False(t, lockclass.IsHeld(gfp.FSReclaimMap))
}

// vmalloc allocates its page tables with GFP_KERNEL, less the caller's
// missing IO and FS (__vmalloc_area_node's memalloc_noio/nofs scopes):
// even a GFP_ATOMIC vmalloc may reclaim there, so a lock held across it is
// ordered before the notifier map, and a notifier callback taking that
// lock is a circular dependency.
func TestVmallocPageTablesOrderHeldLocksBeforeNotifiers(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	z := newZone(t, 1<<20)
	var l lockclass.Mutex
	l.Init(lockclass.WithName("&svm->lock"))
	l.Lock()
	b, err := z.Vmalloc(gfp.PageSize, gfp.Atomic)
	l.Unlock()
	require.NoError(t, err)
	z.Vfree(b)
	lockInNotifier(&l)
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "mmu_notifier_invalidate_range_start")
}

// lockInNotifier takes and drops l inside the notifier map, as a notifier
// callback does under mmu_notifier_invalidate_range_start.
func lockInNotifier(l *lockclass.Mutex) {
	gfp.NotifierMap.Acquire()
	l.Lock()
	l.Unlock()
	gfp.NotifierMap.Release()
}

// fs_reclaim_acquire takes __fs_reclaim_map with _RET_IP_: a site in the
// allocator entry might_alloc is inlined into (__alloc_pages_noprof,
// __kmalloc_noprof), or the caller of fs_reclaim_acquire or might_alloc.
// A lock held around an allocation, after fs_reclaim -> lock was learnt,
// is reported with fs_reclaim's "at:" in the entry, not in an allocator
// helper.
func TestFSReclaimAtNamesTheAllocatorEntry(t *testing.T) {
	cases := []struct {
		name, at string
		alloc    func(z *gfp.Zone)
	}{
		{"AllocPages", `gfp\.\(\*Zone\)\.AllocPages\+0x[0-9a-f]+ gfp/alloc\.go:\d+`, func(z *gfp.Zone) {
			p, err := z.AllocPages(0, gfp.Kernel)
			require.NoError(t, err)
			z.FreePages(p, 0)
		}},
		{"default AllocPages", `gfp\.\(\*Zone\)\.AllocPages\+0x[0-9a-f]+ gfp/alloc\.go:\d+`, func(*gfp.Zone) {
			p, err := gfp.AllocPages(0, gfp.Kernel)
			require.NoError(t, err)
			gfp.FreePages(p, 0)
		}},
		{"kmalloc", `gfp\.\(\*Zone\)\.Alloc\+0x[0-9a-f]+ gfp/kmalloc\.go:\d+`, func(z *gfp.Zone) {
			b, err := z.Alloc(100, gfp.Kernel)
			require.NoError(t, err)
			z.Free(b)
		}},
		{"kmalloc_large", `gfp\.\(\*Zone\)\.Alloc\+0x[0-9a-f]+ gfp/kmalloc\.go:\d+`, func(z *gfp.Zone) {
			b, err := z.Alloc(3*gfp.PageSize, gfp.Kernel)
			require.NoError(t, err)
			z.Free(b)
		}},
		{"vmalloc", `gfp\.\(\*Zone\)\.Vmalloc\+0x[0-9a-f]+ gfp/vmalloc\.go:\d+`, func(z *gfp.Zone) {
			b, err := z.Vmalloc(3*gfp.PageSize, gfp.Kernel)
			require.NoError(t, err)
			z.Vfree(b)
		}},
		{"MightAlloc", `gfp_test\.TestFSReclaimAtNamesTheAllocatorEntry\.func\d+\+0x[0-9a-f]+ gfp/lockdep_test\.go:\d+`, func(*gfp.Zone) {
			gfp.MightAlloc(gfp.Kernel)
		}},
		{"FSReclaimAcquire", `gfp_test\.TestFSReclaimAtNamesTheAllocatorEntry\.func\d+\+0x[0-9a-f]+ gfp/lockdep_test\.go:\d+`, func(*gfp.Zone) {
			gfp.FSReclaimAcquire(gfp.Kernel)
			gfp.FSReclaimRelease(gfp.Kernel)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			krulestest.ResetDefault(t)
			rec := krulestest.Record(t)
			z := newZone(t, 4<<20)
			var l lockclass.Mutex
			l.Init(lockclass.WithName("&drv->lock"))
			gfp.FSReclaimAcquire(gfp.Kernel) // priming: fs_reclaim -> &drv->lock
			l.Lock()
			l.Unlock()
			gfp.FSReclaimRelease(gfp.Kernel)
			l.Lock()
			c.alloc(z)
			l.Unlock()
			require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
			require.Regexp(t, `is trying to acquire lock:\n[0-9a-f]{16} \(fs_reclaim\)\{\+\.\+\.\}-\{0:0\}, at: `+c.at+`\n`, rec.Last().Text)
		})
	}
}
