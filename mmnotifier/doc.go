// Package mmnotifier is the kernel's MMU notifiers (mm/mmu_notifier.c) on
// top of a small address-space model: MM, whose pages come from a
// gfp.Zone, and the operations that change its mappings and so invalidate
// secondary MMUs (Unmap, Protect, Discard, Migrate, ClearSoftDirty, the
// zone's reclaim, the OOM reaper, Exit).
//
// # Notifiers
//
// A Notifier (plus the optional EndNotifier, ReleaseNotifier and young
// interfaces) is registered on an MM with Register, or shared per Allocator
// and address space with Get/Put, and removed with Unregister, which waits
// for every running callback through a grace period. The invalidation path
// is the kernel's: InvalidateRangeStart checks might_sleep, holds the
// mmu_notifier_invalidate_range_start lock map (gfp.NotifierMap) across the
// callbacks, and runs them newest first; a non-blockable range
// (InvalidateRangeStartNonblock, the OOM reaper) runs each callback inside
// a non-block section, so one that sleeps is reported with non_block: 1. A
// failing start is logged ("%pS callback failed with %d in %sblockable
// context."); failing in a blockable range, with anything but ErrAgain, or
// while having an end callback is a WARNING (krules.NotifierMisuse); the
// ends of the successful ones run and the error is returned.
//
// Because gfp.MightAlloc touches the same lock map for every allocation
// that may reclaim, "driver lock held across a GFP_KERNEL allocation" and
// "driver lock taken in a callback" are a circular locking dependency the
// first time both have been seen, with no memory pressure; PrimeLockdep
// adds the 2019 kernels' registration-time priming.
//
// # Interval notifiers
//
// InsertInterval subscribes IntervalOps to one interval through an
// augmented AVL tree (O(log n + k) per invalidation). The sequence scheme
// is the kernel's: the subscriptions' sequence is even when idle, odd while
// an invalidation overlaps an interval (the tree is then frozen and inserts
// and removes are deferred to the end of the last invalidation); a new
// interval starts at the current sequence − 1 when idle. Drivers use
// ReadBegin, ReadRetry under their lock, CheckRetry and SetSeq, and
// HMMRangeFault, exactly as in Documentation/mm/hmm.rst.
//
// # Driving invalidations cheaply
//
// A benchmark or test that needs a stream of invalidations can call the
// kernel's own entry points on a range it reuses, holding mmap_lock for
// reading so that many goroutines run at once:
//
//	r := mmnotifier.NewRange(mm, mmnotifier.EventClear, start, end)
//	mm.MmapLock().RLock()
//	mmnotifier.InvalidateRangeStart(&r) // blockable
//	mmnotifier.InvalidateRangeEnd(&r)
//	if mmnotifier.InvalidateRangeStartNonblock(&r) == nil { // OOM-reaper style
//		mmnotifier.InvalidateRangeEnd(&r)
//	}
//	mm.MmapLock().RUnlock()
//
// These allocate nothing. Discard (mmap_lock for reading) does the same
// with real pages; Unmap and Protect take mmap_lock for writing and so
// serialise; OOMReap runs the whole reaper, retries included
// (WithRetryDelay shortens its 100 ms sleeps). Funcs turns functions into a
// notifier that counts its calls. The zone's memory pressure drives
// reclaim, which unmaps pages of every MM on it with blockable CLEAR
// invalidations.
//
// # Device mappings
//
// MmapDevice maps as mmap(2) on a device file does: its handler, called
// with mmap_lock held for writing, gives the VMA its VMOps, whose Open and
// Close the address space calls where the kernel calls vm_ops->open and
// ->close (a split by Unmap or Protect, Unmap, exit; not the OOM reaper),
// so a driver's per-mapping references stay balanced and lockdep sees
// mmap_lock before the locks they take.
//
// # Real memory
//
// NewProcess maps real anonymous memory of this process and registers it
// with userfaultfd (fs/userfaultfd.c): a Process, whose MM has no modelled
// mappings but the same notifier list, interval tree, lock maps and
// sequence rules, so driver code written against an MM runs unchanged on
// Process.MM(). Madvise, Munmap, Mmap and Mremap call the real syscalls
// and run the invalidations the kernel's madvise_dontneed_single_vma,
// do_vmi_munmap and move_page_tables run (MMU_NOTIFY_CLEAR, _UNMAP), on the
// caller, blockable and under mmap_lock, before the pages go. Calls made
// behind the process's back reach the notifiers through userfaultfd's
// non-cooperative events (UFFD_EVENT_REMOVE, _UNMAP, _REMAP), once the
// kernel has queued them. A first touch of a page is a MISSING fault the
// monitor goroutine resolves (WithPageFault, else the zero page), and
// HMMRangeFault on Process.MM() makes missing pages present the same way.
// Where userfaultfd is unavailable NewProcess's error wraps
// ErrNoUserfaultfd and says why (not Linux; EPERM with
// vm.unprivileged_userfaultfd=0 and no CAP_SYS_PTRACE; ENOSYS in a
// sandbox) and what to do.
//
// # Deviations
//
//   - Notifier has only InvalidateRangeStart; the end callback is the
//     optional EndNotifier, since the kernel forbids an end to notifiers
//     whose start can fail, and a Go method set cannot say "absent".
//     IntervalOps.Invalidate receives the subscription, as the kernel's
//     does, because it can run before InsertInterval returns.
//     arch_invalidate_secondary_tlbs is not modelled.
//   - SRCU read sections are annotated as recursive-read trylocks of the
//     "srcu" map rather than v6.12's recursive-read acquisitions, and not at
//     all around invalidation callbacks. In v6.12 that acquisition is the
//     nearest blocking predecessor of every lock a callback takes, and since
//     a path through a recursive reader is not strong, the notifier map's
//     dependencies on callback locks are lost: the kernel no longer sees the
//     very deadlock the map was added for. A trylock never blocks, as
//     srcu_read_lock never does, and lets the map keep them. Invalidation
//     callbacks already run under the notifier map, so their sections only
//     count readers, and a grace period (Unregister, Put's free, exit)
//     takes the notifier map as well as lock_sync on srcu: Unregister from
//     any callback, or under a lock a callback takes, is still reported,
//     and an invalidation costs a third less. Held-lock lists printed from
//     inside invalidation callbacks therefore lack the kernel's "srcu" line.
//   - For the same reason the package keeps its own SRCU (srcu.go) rather
//     than lockclass.SRCU: that one is the kernel's srcu_struct, whose
//     ReadLock is the recursive-read acquisition above and would lose the
//     notifier map's dependencies, and whose readers always annotate. The
//     notifier walk also needs readers that only count (walkLock), and
//     counters sharded per goroutine stack, since every invalidation on
//     every processor enters a section; lockclass.SRCU's two shared words
//     would be one cache line all of them write.
//   - When a non-blockable start fails in a list notifier after the
//     interval notifiers succeeded, the kernel leaves the interval tree's
//     invalidation counted, and the address space excluded for good, since
//     the caller must not call end. krules undoes it, as the -EAGAIN
//     contract says.
//   - On a Process, the kernel waits only until the monitor's read(2) has
//     taken an event, not until it is handled, so the invalidation of a
//     change made behind the process's back may come after its pages are
//     gone; the Process's own methods invalidate first. HMMRangeFault
//     there returns virtual page numbers, since user space cannot see
//     frame numbers.
//   - Pages are anonymous and private; reclaimed ones are dropped, not
//     swapped, and a later touch maps a fresh zeroed page. The OOM reaper's
//     "unable to reap" line is followed by the victim's mmap_lock state,
//     not its stack and every task's locks (sched_show_task,
//     debug_show_all_locks).
package mmnotifier
