// Package dmafence is the kernel's drivers/dma-buf for goroutines: fences
// (struct dma_fence), the fence signalling annotations
// (dma_fence_begin_signalling and dma_fence_map) and reservation objects
// (struct dma_resv), as GPU and RDMA drivers use them.
//
// A Fence is a one-shot completion of work on a timeline: a context from
// ContextAlloc and a sequence number. Signal completes it once; Wait waits
// for it. The signalling side is annotated: Signal, and any code between
// BeginSignalling and EndSignalling, holds the lock map "dma_fence_map"
// shared (read = 1), and Wait acquires it exclusively for a moment
// (__dma_fence_might_wait). So anything a signaller does that a waiter may
// hold while it waits, a lock or a GFP_KERNEL allocation (fs_reclaim),
// closes a cycle through dma_fence_map that lockdep reports the first time
// both sides have been seen, without the deadlock having to happen:
//
//	WARNING: possible circular locking dependency detected
//	Chain exists of:
//	  fs_reclaim --> mmu_notifier_invalidate_range_start --> dma_fence_map
//
// A Resv is a reservation object: a lockclass.WWMutex of ReservationClass
// and the fences of the work that uses the buffer, each with a Usage. The
// first Resv of a validator generation primes lockdep with the kernel's
// boot-time order (dma_resv_lockdep; later ones find it known):
// mmap_lock → reservation_ww_class_acquire → reservation_ww_class_mutex →
// fs_reclaim → mmu_notifier_invalidate_range_start → dma_fence_map. From
// then on an MMU notifier may wait for fences, and a signalling path that
// allocates with GFP_KERNEL is reported.
//
// One report is krules' own: a fence wait inside a signalling section
// (Wait, WaitTimeout, MightWait, a Resv wait that meets a fence) is a
// FenceMisuse WARNING, "dma_fence_wait inside a dma_fence signalling
// section". v6.12 prints nothing there: __dma_fence_might_wait drops the
// section's read hold of dma_fence_map around its exclusive acquisition,
// so lockdep sees such a wait only through the locks held across it. The
// signaller that waits for a fence deadlocks all the same when that fence
// needs it, hence the warning.
//
// Why no dma_fence_get/put: the kernel counts references because a fence's
// memory must outlive every holder and be freed by the last one, from any
// context. Go's garbage collector does exactly that, so a *Fence is simply
// shared; there is no release callback to run and nothing to leak or
// double-free.
package dmafence
