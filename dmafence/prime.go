package dmafence

import (
	"sync"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
)

// iMmapKey is the class of the dummy i_mmap_rwsem the priming takes: the
// kernel's shrinkers unmap buffers, taking i_mmap_rwsem under fs_reclaim.
var iMmapKey lockclass.Key

// primeMM is the address space whose mmap_lock the priming holds, as
// dma_resv_lockdep allocates an mm; made on first use, never torn down.
var primeMM = sync.OnceValue(func() *mmnotifier.MM { return mmnotifier.NewMM(mmnotifier.WithoutReclaim()) })

// resvPrime names the dma_resv_lockdep priming.
var resvPrime lockclass.PrimeKey

// primeLockdep runs dma_resv_lockdep once per validator generation.
func primeLockdep() { lockclass.Default().PrimeOnce(&resvPrime, dmaResvLockdep) }

// dmaResvLockdep is dma_resv_lockdep, the kernel's subsys_initcall that
// teaches lockdep the order of the GPU memory-management locks before any
// driver runs:
//
//	mmap_lock → reservation_ww_class_acquire → reservation_ww_class_mutex
//	  → fs_reclaim → i_mmap_rwsem
//	fs_reclaim → mmu_notifier_invalidate_range_start → dma_fence_map
//
// so that an MMU notifier may wait for fences and take a reservation lock
// only by trylock, and a fence signalling path may neither allocate with
// GFP_KERNEL nor take a reservation lock that is held while allocating.
// PrimeOnce runs it on a goroutine of its own, holding nothing, whatever
// the caller of Resv.Init holds.
func dmaResvLockdep() {
	mm := primeMM()
	mm.MmapLock().RLock()
	var ctx lockclass.WWAcquireCtx
	ctx.Init(ReservationClass)
	var obj lockclass.WWMutex
	obj.Init(ReservationClass)
	if obj.Lock(&ctx) != nil {
		obj.LockSlow(&ctx)
	}
	gfp.FSReclaimAcquire(gfp.Kernel)
	var iMmap lockclass.RWSem
	iMmap.Init(lockclass.WithKey(&iMmapKey), lockclass.WithName("&mapping->i_mmap_rwsem"))
	iMmap.Lock()
	iMmap.Unlock()
	gfp.NotifierMap.Acquire()
	mightWait()
	gfp.NotifierMap.Release()
	gfp.FSReclaimRelease(gfp.Kernel)
	obj.Unlock()
	ctx.Fini()
	mm.MmapLock().RUnlock()
}
