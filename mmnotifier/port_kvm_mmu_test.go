package mmnotifier_test

// A port of KVM's MMU notifier (virt/kvm/kvm_main.c, v6.12) and the part of
// the x86 MMU it drives (arch/x86/kvm/mmu/mmu.c, tdp_mmu.c) to krules'
// public API: invalidate_range_start/end bracketing
// mmu_invalidate_in_progress and mmu_invalidate_seq under kvm->mmu_lock,
// the vCPU page fault that retries when an invalidation raced with it,
// the young callbacks and release. One memslot; no pfn caches, memslot
// updates or guest_memfd.

import (
	"sync/atomic"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
	"github.com/krules/krules/nonblock"
)

const (
	retPFFixed = 1 // RET_PF_FIXED
	retPFRetry = 2 // RET_PF_RETRY

	invalidGPA = ^uint64(0) // INVALID_GPA

	// kvmYieldEvery stands for need_resched() in tdp_mmu_iter_cond_resched:
	// krules has no scheduler tick, so a zap offers to yield after this
	// many SPTEs, every time, which makes the checks deterministic.
	kvmYieldEvery = 8
)

// kvmBugs selects the deliberate mistakes of a broken port.
type kvmBugs struct {
	sleepUnderMMULock bool // the zap calls cond_resched() with mmu_lock held instead of cond_resched_rwlock_write
	yieldNonblock     bool // the zap yields whatever range->may_block says
}

// kvmSPTE is a leaf SPTE of the TDP MMU: the host frame, writable, and the
// accessed bit the "hardware" sets.
type kvmSPTE struct {
	pfn      uint64
	writable bool
	accessed atomic.Bool
}

// kvmMemslot is struct kvm_memory_slot.
type kvmMemslot struct {
	baseGFN, npages, userspaceAddr uint64
}

// kvm is struct kvm with what its MMU notifier touches.
type kvm struct {
	mm   *mmnotifier.MM
	sub  *mmnotifier.Subscription
	bugs kvmBugs
	slot kvmMemslot

	srcu    lockclass.SRCU   // kvm->srcu
	mmuLock lockclass.RWLock // kvm->mmu_lock: an rwlock_t on x86 (KVM_HAVE_MMU_RWLOCK)
	// Under mmu_lock for writing; mmuInvalidateSeq and InProgress are
	// also read without it (READ_ONCE) by the fault path's early check.
	mmuInvalidateInProgress atomic.Int64
	mmuInvalidateSeq        atomic.Uint64
	mmuInvalidateRangeStart uint64
	mmuInvalidateRangeEnd   uint64
	sptes                   map[uint64]*kvmSPTE // gfn -> leaf SPTE (mmu_lock)

	mnInvalidateLock        lockclass.SpinLock // kvm->mn_invalidate_lock
	mnActiveInvalidateCount int                // under mn_invalidate_lock

	zapped, flushes, retries, released atomic.Int64
}

// kvmCreateVM is kvm_create_vm with one memslot over [hva, hva+npages
// pages) at gfn 0: kvm_init_mmu_notifier registers the notifier on the
// creating process's mm.
func kvmCreateVM(mm *mmnotifier.MM, hva, npages uint64, bugs kvmBugs) (*kvm, error) {
	k := &kvm{mm: mm, bugs: bugs, slot: kvmMemslot{npages: npages, userspaceAddr: hva}, sptes: map[uint64]*kvmSPTE{}}
	k.srcu.Init(lockclass.WithName("&kvm->srcu"))
	k.mmuLock.Init(lockclass.WithName("&kvm->mmu_lock"), lockclass.QueuedReaders()) // x86: a queued rwlock
	k.mnInvalidateLock.Init(lockclass.WithName("&kvm->mn_invalidate_lock"))
	var err error
	if k.sub, err = mmnotifier.Register(mm, (*kvmMMUNotifier)(k)); err != nil {
		return nil, err
	}
	return k, nil
}

// destroy is kvm_destroy_vm: mmu_notifier_unregister, which calls release
// if the mm has not already.
func (k *kvm) destroy() { k.sub.Unregister() }

// kvmMMUNotifier is kvm->mmu_notifier with kvm_mmu_notifier_ops.
type kvmMMUNotifier kvm

// kvmHVARange is struct kvm_mmu_notifier_range.
type kvmHVARange struct {
	start, end uint64
	handler    func(k *kvm, start, end uint64, mayBlock bool) bool // nil: kvm_null_fn
	onLock     func(k *kvm)
	flushOnRet bool
	mayBlock   bool
}

// handleHVARange is __kvm_handle_hva_range for the one memslot: under
// kvm->srcu, take mmu_lock for the first overlapping memslot, run on_lock,
// then the handler on the overlap's gfns; flush if the handler asks. It
// returns whether a memslot was found and what the handler answered.
func (k *kvm) handleHVARange(r *kvmHVARange) (found, ret bool) {
	idx := k.srcu.ReadLock()
	defer k.srcu.ReadUnlock(idx)
	s := &k.slot
	hvaStart := max(r.start, s.userspaceAddr)
	hvaEnd := min(r.end, s.userspaceAddr+s.npages*gfp.PageSize)
	if hvaStart >= hvaEnd {
		return false, false
	}
	k.mmuLock.Lock() // KVM_MMU_LOCK
	if r.onLock != nil {
		r.onLock(k)
	}
	if r.handler != nil {
		// hva_to_gfn_memslot, rounding the end up.
		gfnStart := s.baseGFN + (hvaStart-s.userspaceAddr)>>gfp.PageShift
		gfnEnd := s.baseGFN + (hvaEnd+gfp.PageSize-1-s.userspaceAddr)>>gfp.PageShift
		ret = r.handler(k, gfnStart, gfnEnd, r.mayBlock)
	}
	if r.flushOnRet && ret {
		k.flushRemoteTLBs()
	}
	k.mmuLock.Unlock()
	return true, ret
}

// flushRemoteTLBs is kvm_flush_remote_tlbs: a request every vCPU acks
// before the lock is dropped; it does not sleep.
func (k *kvm) flushRemoteTLBs() { k.flushes.Add(1) }

// invalidateBegin is kvm_mmu_invalidate_begin, under mmu_lock for writing.
func (k *kvm) invalidateBegin() {
	if k.mmuInvalidateInProgress.Add(1) == 1 {
		k.mmuInvalidateRangeStart = invalidGPA
		k.mmuInvalidateRangeEnd = invalidGPA
	}
}

// invalidateRangeAdd is kvm_mmu_invalidate_range_add.
func (k *kvm) invalidateRangeAdd(start, end uint64) {
	if k.mmuInvalidateRangeStart == invalidGPA {
		k.mmuInvalidateRangeStart, k.mmuInvalidateRangeEnd = start, end
		return
	}
	k.mmuInvalidateRangeStart = min(k.mmuInvalidateRangeStart, start)
	k.mmuInvalidateRangeEnd = max(k.mmuInvalidateRangeEnd, end)
}

// invalidateEnd is kvm_mmu_invalidate_end: bump the sequence before
// dropping in_progress, so a fault that saw neither retries.
func (k *kvm) invalidateEnd() {
	k.mmuInvalidateSeq.Add(1)
	if k.mmuInvalidateInProgress.Add(-1) < 0 {
		panic("KVM_BUG_ON(kvm->mmu_invalidate_in_progress < 0)")
	}
}

// unmapGFNRange is kvm_mmu_unmap_gfn_range: record the range, then zap.
func unmapGFNRange(k *kvm, start, end uint64, mayBlock bool) bool {
	k.invalidateRangeAdd(start, end)
	return k.zapLeafs(start, end, mayBlock)
}

// zapLeafs is tdp_mmu_zap_leafs, under mmu_lock for writing: clear the
// leaf SPTEs of [start, end), yielding now and then if can_yield
// (tdp_mmu_iter_cond_resched, which drops mmu_lock to reschedule).
func (k *kvm) zapLeafs(start, end uint64, canYield bool) bool {
	flush := false
	n := 0
	for gfn := start; gfn < end; gfn++ {
		if _, ok := k.sptes[gfn]; !ok {
			continue
		}
		delete(k.sptes, gfn)
		k.zapped.Add(1)
		flush = true
		if n++; n%kvmYieldEvery != 0 {
			continue
		}
		switch {
		case k.bugs.sleepUnderMMULock:
			nonblock.CondResched()
		case canYield || k.bugs.yieldNonblock:
			if flush {
				k.flushRemoteTLBs()
				flush = false
			}
			k.mmuLock.CondReschedWrite()
		}
	}
	return flush
}

// InvalidateRangeStart is kvm_mmu_notifier_invalidate_range_start.
func (n *kvmMMUNotifier) InvalidateRangeStart(r *mmnotifier.Range) error {
	k := (*kvm)(n)
	// Keeps memslot updates out until the matching end (its pair is the
	// decrement there).
	k.mnInvalidateLock.Lock()
	k.mnActiveInvalidateCount++
	k.mnInvalidateLock.Unlock()
	// gfn_to_pfn_cache_invalidate_start would go here, before mmu_lock.
	k.handleHVARange(&kvmHVARange{
		start: r.Start, end: r.End,
		handler: unmapGFNRange, onLock: (*kvm).invalidateBegin,
		flushOnRet: true, mayBlock: r.Blockable(),
	})
	// kvm_arch_guest_memory_reclaimed, after mmu_lock: nothing on a
	// guest without SEV.
	return nil
}

// InvalidateRangeEnd is kvm_mmu_notifier_invalidate_range_end.
func (n *kvmMMUNotifier) InvalidateRangeEnd(r *mmnotifier.Range) {
	k := (*kvm)(n)
	k.handleHVARange(&kvmHVARange{
		start: r.Start, end: r.End,
		onLock: (*kvm).invalidateEnd, mayBlock: r.Blockable(),
	})
	k.mnInvalidateLock.Lock()
	if k.mnActiveInvalidateCount == 0 {
		panic("WARN_ON_ONCE(!kvm->mn_active_invalidate_count)")
	}
	k.mnActiveInvalidateCount--
	k.mnInvalidateLock.Unlock()
	// The rcuwait_wake_up of a memslot update waiting for the count to
	// drop to zero would go here.
}

// ageGFN is kvm_age_gfn: test and clear the accessed bits.
func ageGFN(k *kvm, start, end uint64, _ bool) bool {
	young := false
	for gfn := start; gfn < end; gfn++ {
		if s, ok := k.sptes[gfn]; ok && s.accessed.Swap(false) {
			young = true
		}
	}
	return young
}

// testAgeGFN is kvm_test_age_gfn.
func testAgeGFN(k *kvm, start, end uint64, _ bool) bool {
	for gfn := start; gfn < end; gfn++ {
		if s, ok := k.sptes[gfn]; ok && s.accessed.Load() {
			return true
		}
	}
	return false
}

// ClearFlushYoung is kvm_mmu_notifier_clear_flush_young.
func (n *kvmMMUNotifier) ClearFlushYoung(_ *mmnotifier.MM, start, end uint64) bool {
	_, young := (*kvm)(n).handleHVARange(&kvmHVARange{start: start, end: end, handler: ageGFN, flushOnRet: true})
	return young
}

// ClearYoung is kvm_mmu_notifier_clear_young: no flush, because a stale
// accessed bit in the TLB only costs reclaim a little accuracy.
func (n *kvmMMUNotifier) ClearYoung(_ *mmnotifier.MM, start, end uint64) bool {
	_, young := (*kvm)(n).handleHVARange(&kvmHVARange{start: start, end: end, handler: ageGFN})
	return young
}

// TestYoung is kvm_mmu_notifier_test_young.
func (n *kvmMMUNotifier) TestYoung(_ *mmnotifier.MM, addr uint64) bool {
	_, young := (*kvm)(n).handleHVARange(&kvmHVARange{start: addr, end: addr + 1, handler: testAgeGFN})
	return young
}

// Release is kvm_mmu_notifier_release: kvm_flush_shadow_all under
// kvm->srcu, zapping everything (kvm_mmu_zap_all, which may yield).
func (n *kvmMMUNotifier) Release(*mmnotifier.MM) {
	k := (*kvm)(n)
	idx := k.srcu.ReadLock()
	k.mmuLock.Lock()
	k.zapLeafs(0, k.slot.baseGFN+k.slot.npages, true)
	k.flushRemoteTLBs()
	k.mmuLock.Unlock()
	k.srcu.ReadUnlock(idx)
	k.released.Add(1)
}

// invalidateRetryGFN is mmu_invalidate_retry_gfn, under mmu_lock: an
// invalidation of gfn is running, or one ran since mmuSeq was read.
func (k *kvm) invalidateRetryGFN(mmuSeq, gfn uint64) bool {
	if k.mmuInvalidateInProgress.Load() != 0 && gfn >= k.mmuInvalidateRangeStart && gfn < k.mmuInvalidateRangeEnd {
		return true
	}
	return k.mmuInvalidateSeq.Load() != mmuSeq
}

// invalidateRetryGFNUnsafe is mmu_invalidate_retry_gfn_unsafe: the same
// check without mmu_lock, to skip a fault that will be retried anyway. The
// range bounds are read racily in the kernel; here only in_progress is,
// which is enough to be conservative.
func (k *kvm) invalidateRetryGFNUnsafe(mmuSeq uint64) bool {
	return k.mmuInvalidateInProgress.Load() != 0 || k.mmuInvalidateSeq.Load() != mmuSeq
}

// pageFault is kvm_tdp_page_fault through direct_page_fault for one gfn
// (the shadow MMU's write_lock rather than the TDP MMU's read_lock):
// sample mmu_invalidate_seq, fault the host page in (hva_to_pfn, which
// takes mmap_lock), then map it under mmu_lock unless an invalidation
// raced (is_page_fault_stale). The vCPU runs under kvm->srcu.
func (k *kvm) pageFault(gfn uint64, write bool) (int, error) {
	idx := k.srcu.ReadLock()
	defer k.srcu.ReadUnlock(idx)
	mmuSeq := k.mmuInvalidateSeq.Load() // smp_rmb() follows
	if k.invalidateRetryGFNUnsafe(mmuSeq) {
		k.retries.Add(1)
		return retPFRetry, nil
	}
	hva := k.slot.userspaceAddr + (gfn-k.slot.baseGFN)<<gfp.PageShift
	pfn, err := k.mm.Fault(hva, write) // __kvm_mmu_faultin_pfn: get_user_pages
	if err != nil {
		return 0, err // KVM_PFN_ERR_FAULT: -EFAULT to userspace
	}
	k.mmuLock.Lock()
	defer k.mmuLock.Unlock()
	if k.invalidateRetryGFN(mmuSeq, gfn) {
		k.retries.Add(1)
		return retPFRetry, nil
	}
	k.sptes[gfn] = &kvmSPTE{pfn: pfn, writable: write} // direct_map
	return retPFFixed, nil
}

// guestRead is the guest's load from gfn through its SPTE, as the
// hardware would walk it; it sets the accessed bit. It reports false
// where there is no SPTE (an EPT violation: the vCPU faults).
func (k *kvm) guestRead(gfn uint64, buf []byte) bool {
	k.mmuLock.RLock() // stands for the hardware walk, which needs no lock
	defer k.mmuLock.RUnlock()
	s, ok := k.sptes[gfn]
	if !ok {
		return false
	}
	s.accessed.Store(true)
	copy(buf, k.mm.Zone().PageByPFN(s.pfn).Bytes())
	return true
}
