package mmnotifier

import "slices"

// VMOps are the operations of a mapping made by MmapDevice: the open and
// close of a driver's vm_operations_struct, which keep per-mapping state
// (a reference on the object the mapping shows, gntdev_vma_open and
// gntdev_vma_close, drm_gem_vm_open and drm_gem_vm_close) balanced however
// the process cuts the mapping up. The value itself stands for
// vm_private_data: the VMA it is called with says which piece.
//
// Every VMA that has operations gets exactly one Close, and every VMA but
// the one MmapDevice made gets exactly one Open before it, so Opens plus
// one equal Closes once the mapping is gone:
//   - Open(new) when MM.Unmap or MM.Protect splits a VMA (__split_vma),
//     for the new piece, which is the one outside the range (the VMA
//     already seen keeps the part inside);
//   - Close(v) when v goes: MM.Unmap (remove_vma, after the range's pages
//     are freed), and the last MM.Put or MM.Exit (exit_mmap, in address
//     order, after the notifiers' release and after every page is freed).
//
// The OOM reaper only unmaps pages and calls neither (__oom_reap_task_mm).
// VMAs with operations are never merged: MmapDevice's mappings count as
// VM_DONTEXPAND, which device mappings set (gntdev_mmap, drm_gem_mmap_obj,
// i915's mmap, rdma_user_mmap_io) and which vma_merge_existing_range
// refuses; without it, can_merge_remove_vma would still refuse to merge
// away a VMA that has a close.
//
// Both run with the address space's mmap_lock held for writing and
// nothing else of the address space's, so a callback that takes a driver
// lock teaches lockdep mmap_lock -> that lock, as in the kernel; both may
// sleep. Neither may call the MM's methods that take mmap_lock.
type VMOps interface {
	// Open is vm_ops->open: v is a new VMA that copies another's
	// operations.
	Open(v *VMA)
	// Close is vm_ops->close: v is leaving the address space.
	Close(v *VMA)
}

// MmapDevice maps length bytes (rounded up to pages) with protection prot
// where Mmap would, as mmap(2) on a device file does: with mmap_lock held
// for writing it makes the VMA and calls mmap with it, the file's
// file_operations->mmap (call_mmap from mmap_region), which returns the
// VMA's operations. The VMA is in the address space while mmap runs, so
// mmap can fill it with FaultLocked (a driver's remap_pfn_range or
// vm_insert_page); no one else can see it, as mmap_lock is held. If mmap
// fails, whatever it faulted in is unmapped under an MMU_NOTIFY_UNMAP
// invalidation and freed (unmap_region), the VMA goes without a Close, and
// MmapDevice returns mmap's error. A nil VMOps maps without operations,
// as Mmap does. The lengths Mmap refuses MmapDevice refuses too, before
// calling mmap. It may sleep. See VMOps for when the operations are
// called.
func (mm *MM) MmapDevice(length uint64, prot Prot, mmap func(v *VMA) (VMOps, error)) (uint64, error) {
	if length == 0 {
		return 0, ErrInvalid
	}
	if length > taskSize-mmapBase {
		return 0, ErrNoMem
	}
	length = (length + PageSize - 1) &^ (PageSize - 1)
	mm.mmapLock.Lock()
	defer mm.mmapLock.Unlock()
	v, err := mm.mapLocked(length, prot)
	if err != nil {
		return 0, err
	}
	ops, err := mmap(v)
	if err == nil {
		if ops != nil {
			if mm.vmOps == nil {
				mm.vmOps = make(map[*VMA]VMOps)
			}
			mm.vmOps[v], v.hasOps = ops, true
		}
		return v.start, nil
	}
	r := NewRange(mm, EventUnmap, v.start, v.end)
	InvalidateRangeStart(&r)
	mm.ptl.Lock()
	freed := mm.zap(nil, v.start, v.end)
	mm.ptl.Unlock()
	InvalidateRangeEnd(&r)
	i := mm.find(v.start)
	mm.vmas = slices.Delete(mm.vmas, i, i+1)
	mm.freePages(freed)
	return 0, err
}

// closeVMAs calls Close on those of vmas, which have left the address
// space, that have operations, in order. The caller holds mmap_lock for
// writing.
func (mm *MM) closeVMAs(vmas []*VMA) {
	for _, v := range vmas {
		if v.hasOps {
			ops := mm.vmOps[v]
			delete(mm.vmOps, v)
			ops.Close(v)
		}
	}
}
