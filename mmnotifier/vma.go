package mmnotifier

import (
	"slices"
	"syscall"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
)

// PageSize is the size of a page, gfp.PageSize.
const PageSize = gfp.PageSize

// Prot is a mapping's access permission (PROT_READ, PROT_WRITE).
type Prot uint8

const (
	// ProtNone is PROT_NONE: no access.
	ProtNone Prot = 0
	// ProtRead is PROT_READ.
	ProtRead Prot = 1 << iota
	// ProtWrite is PROT_WRITE.
	ProtWrite
	// ProtReadWrite is PROT_READ|PROT_WRITE.
	ProtReadWrite = ProtRead | ProtWrite
)

// ErrNoMem is -ENOMEM: mprotect over addresses that are not all mapped, or
// no room left in the address space.
var ErrNoMem error = syscall.ENOMEM

// mmapBase is where Mmap starts looking for room (TASK_UNMAPPED_BASE).
const mmapBase = 1 << 32

// taskSize is TASK_SIZE on x86-64 with 4-level page tables: the end of
// the user address space (128 TiB less a guard page).
const taskSize = 1<<47 - PageSize

// VMA is a mapped range of an address space (struct vm_area_struct). Its
// pages are in the address space's page table; a mapping made by Mmap is
// anonymous private memory, one made by MmapDevice also has the
// operations its mmap handler gave it (vm_ops, with vm_private_data).
// A VMA's bounds and protection change under mmap_lock held for writing,
// so read them with mmap_lock held, as in VMOps' callbacks.
type VMA struct {
	start, end uint64
	prot       Prot
	// hasOps says the VMA has operations, kept in MM.vmOps: a VMOps
	// field here would make every VMA, anonymous ones too, an object the
	// GC scans. A cycle of Mmap, a Protect that splits in three and Unmap
	// cost 6239-7321 instructions with the field (and two more lookups in
	// Protect, since dropped), 5789-5832 with the flag, 5768-6149 before
	// VMAs had operations (cachegrind, AMD EPYC (Zen 3, KVM); the spread
	// is the GC's).
	hasOps bool
}

// Start returns the VMA's first address (vm_start).
func (v *VMA) Start() uint64 { return v.start }

// End returns the address just past the VMA (vm_end).
func (v *VMA) End() uint64 { return v.end }

// Prot returns the VMA's protection.
func (v *VMA) Prot() Prot { return v.prot }

// zap clears the entries of [start, end), appends their pages to freed
// and returns it. The caller holds the page-table lock.
func (mm *MM) zap(freed []*gfp.Page, start, end uint64) []*gfp.Page {
	n := len(freed)
	freed = mm.pt.zap(start, end, freed)
	mm.rss.Add(-int64(len(freed) - n))
	return freed
}

// freePages frees pages after an invalidation's end: tlb_finish_mmu.
func (mm *MM) freePages(pages []*gfp.Page) {
	for _, p := range pages {
		mm.zone.FreePages(p, 0)
	}
}

// checkRange validates [addr, addr+length) and returns its end.
func checkRange(addr, length uint64) (uint64, error) {
	if addr%PageSize != 0 || length == 0 {
		return 0, ErrInvalid
	}
	length = (length + PageSize - 1) &^ (PageSize - 1)
	end := addr + length
	if end < addr || length == 0 {
		return 0, ErrInvalid
	}
	return end, nil
}

// find returns the index of the first VMA that ends after addr. The caller
// holds mmap_lock.
func (mm *MM) find(addr uint64) int {
	i, _ := slices.BinarySearchFunc(mm.vmas, addr, func(v *VMA, a uint64) int {
		if v.end <= a {
			return -1
		}
		return 1
	})
	return i
}

// vmaAt returns the VMA containing addr, or nil. The caller holds
// mmap_lock.
func (mm *MM) vmaAt(addr uint64) *VMA {
	if i := mm.find(addr); i < len(mm.vmas) && mm.vmas[i].start <= addr {
		return mm.vmas[i]
	}
	return nil
}

// split makes addr a VMA boundary if it falls inside one (__split_vma).
// The new VMA is the piece below addr if newBelow, else the piece above;
// munmap and mprotect split the range's first VMA with newBelow and its
// last without (vms_gather_munmap_vmas, vma_modify), so the VMA a driver
// saw keeps the part inside the range and the pieces outside are new.
// A new piece of a VMA with operations gets Open, as __split_vma calls
// vm_ops->open(new) once the new VMA has its bounds and before it is
// stored or the old one shrinks. The caller holds mmap_lock for writing.
// The page table is the address space's, so it does not change.
func (mm *MM) split(addr uint64, newBelow bool) {
	i := mm.find(addr)
	if i == len(mm.vmas) || mm.vmas[i].start >= addr {
		return
	}
	v := mm.vmas[i]
	n := &VMA{start: addr, end: v.end, prot: v.prot, hasOps: v.hasOps}
	if newBelow {
		n.start, n.end = v.start, addr
	}
	if n.hasOps {
		ops := mm.vmOps[v]
		mm.vmOps[n] = ops
		ops.Open(n)
	}
	if newBelow {
		v.start = addr
		mm.vmas = slices.Insert(mm.vmas, i, n)
		return
	}
	v.end = addr
	mm.vmas = slices.Insert(mm.vmas, i+1, n)
}

// merge joins neighbouring VMAs with the same protection in [lo, hi]
// (vma_merge), except VMAs with operations: MmapDevice's mappings are
// VM_DONTEXPAND, which is in VM_SPECIAL, and vma_merge_existing_range
// merges no special VMA. The caller holds mmap_lock for writing.
func (mm *MM) merge(lo, hi int) {
	lo, hi = max(lo, 1), min(hi, len(mm.vmas)-1)
	for i := hi; i >= lo; i-- {
		a, b := mm.vmas[i-1], mm.vmas[i]
		if a.end == b.start && a.prot == b.prot && !a.hasOps && !b.hasOps {
			a.end = b.end
			mm.vmas = slices.Delete(mm.vmas, i, i+1)
		}
	}
}

// Mmap maps length bytes (rounded up to pages) of anonymous memory with
// protection prot at the lowest free address from 4 GiB up, and returns the
// address. Pages, and the page tables that map them, are allocated on
// first touch, so an untouched mapping costs a few dozen bytes whatever its
// size. A zero length is ErrInvalid; a length that overflows when rounded
// up, or that finds no room below the end of the user address space
// (128 TiB, x86-64's TASK_SIZE), is ErrNoMem, as do_mmap and
// get_unmapped_area say. Mapping fires no notifier.
func (mm *MM) Mmap(length uint64, prot Prot) (uint64, error) {
	return mm.MmapDevice(length, prot, anonymous)
}

// anonymous is the mmap of an anonymous mapping: no operations.
func anonymous(*VMA) (VMOps, error) { return nil, nil }

// mapLocked inserts a VMA of length bytes (a whole number of pages, not
// zero) at the lowest free address from 4 GiB up. The caller holds
// mmap_lock for writing.
func (mm *MM) mapLocked(length uint64, prot Prot) (*VMA, error) {
	if mm.users.Load() <= 0 {
		return nil, ErrInvalid
	}
	addr := uint64(mmapBase)
	i := mm.find(addr)
	for ; i < len(mm.vmas); i++ {
		if mm.vmas[i].start-addr >= length {
			break
		}
		addr = mm.vmas[i].end
	}
	if addr > taskSize-length {
		return nil, ErrNoMem
	}
	v := &VMA{start: addr, end: addr + length, prot: prot}
	mm.vmas = slices.Insert(mm.vmas, i, v)
	return v, nil
}

// Unmap removes the mappings in [addr, addr+length): munmap. If any VMA
// overlaps the range, the range is invalidated (MMU_NOTIFY_UNMAP,
// blockable) while its pages are still mapped, the entries are cleared,
// the invalidation ends and the pages are freed. Unmapping nothing is not
// an error and fires nothing; a misaligned or empty range, or one that
// reaches past the end of the user address space, is ErrInvalid
// (do_vmi_munmap). It takes mmap_lock for writing and may sleep.
//
// A VMA with operations that straddles an end of the range is split
// first, and the piece outside gets Open (__split_vma); after the pages
// are freed, each removed VMA with operations gets Close, in address
// order (remove_vma), with mmap_lock still held for writing, as
// vm_munmap holds it (munmap(2) downgrades it to reading first, in
// vms_complete_munmap_vmas, which gives lockdep the same mmap_lock ->
// driver lock dependency).
func (mm *MM) Unmap(addr, length uint64) error {
	if addr > taskSize || length > taskSize-addr {
		return ErrInvalid
	}
	end, err := checkRange(addr, length)
	if err != nil {
		return err
	}
	mm.mmapLock.Lock()
	defer mm.mmapLock.Unlock()
	i := mm.find(addr)
	if i == len(mm.vmas) || mm.vmas[i].start >= end {
		return nil
	}
	mm.split(addr, true)
	mm.split(end, false)
	lo := mm.find(addr)
	hi := lo
	var closing []*VMA
	for hi < len(mm.vmas) && mm.vmas[hi].start < end {
		if mm.vmas[hi].hasOps {
			closing = append(closing, mm.vmas[hi])
		}
		hi++
	}
	r := NewRange(mm, EventUnmap, addr, end)
	InvalidateRangeStart(&r)
	mm.ptl.Lock()
	freed := mm.zap(nil, addr, end)
	mm.ptl.Unlock()
	InvalidateRangeEnd(&r)
	mm.vmas = slices.Delete(mm.vmas, lo, hi)
	mm.freePages(freed)
	mm.closeVMAs(closing)
	return nil
}

// Protect changes the protection of [addr, addr+length) to prot:
// mprotect. The mappings are changed in address order up to the first
// address that is not mapped, which fails the call with ErrNoMem: what
// came before it keeps its new protection, and a hole at addr changes
// nothing (do_mprotect_pkey). A piece already at prot fires nothing; each
// other piece is invalidated with MMU_NOTIFY_PROTECTION_VMA (blockable) the
// way v6.12's change_pud_range starts the range lazily: once for each
// PGDIR_SIZE (512 GiB) span of the piece, from the first PUD_SIZE (1 GiB)
// slot in it that has page tables, clamped to the piece, to the span's end
// in the piece, and not at all for a span without page tables. So the range
// may begin after the piece does, and a piece without pages of its own is
// still invalidated if a page elsewhere in the same 1 GiB slot is mapped
// (the kernel tests pud_none, not the PTEs). A zero length does nothing; a
// misaligned addr is ErrInvalid and a range that wraps around ErrNoMem. It
// takes mmap_lock for writing and may sleep.
//
// A VMA with operations that straddles an end of the range and changes
// protection is split, and the piece outside gets Open (vma_modify,
// __split_vma); one already at prot is left whole, as mprotect_fixup
// returns early for it. VMAs with operations are never merged.
func (mm *MM) Protect(addr, length uint64, prot Prot) error {
	if addr%PageSize != 0 {
		return ErrInvalid
	}
	if length == 0 {
		return nil
	}
	end := addr + (length+PageSize-1)&^(PageSize-1)
	if end <= addr {
		return ErrNoMem
	}
	mm.mmapLock.Lock()
	defer mm.mmapLock.Unlock()
	hole := addr
	var first, last *VMA
	for hole < end {
		v := mm.vmaAt(hole)
		if v == nil {
			break
		}
		if first == nil {
			first = v
		}
		last = v
		hole = v.end
	}
	var err error
	if hole < end {
		err, end = ErrNoMem, hole
	}
	if end == addr {
		return err
	}
	// An anonymous VMA split here for nothing merges back below; one with
	// operations would not, and its Open would see a piece the kernel
	// never makes. The split below addr leaves first as the piece above,
	// so last still is the VMA that end may fall in.
	if !first.hasOps || first.prot != prot {
		mm.split(addr, true)
	}
	if !last.hasOps || last.prot != prot {
		mm.split(end, false)
	}
	lo := mm.find(addr)
	hi := lo
	for hi < len(mm.vmas) && mm.vmas[hi].start < end {
		v := mm.vmas[hi]
		hi++
		if v.prot == prot {
			continue
		}
		// change_protection_range walks the PGD entries (change_p4d_range
		// is one step with the P4D folded); change_pud_range starts one
		// range for each, at its first populated PUD. The protection is the
		// VMA's, so it changes, under the page-table lock, within the first
		// range started, or at once if none is.
		for a := v.start; a < v.end; {
			b := min(v.end, a&^(pgdirSize-1)+pgdirSize)
			mm.ptl.Lock()
			s, ok := mm.pt.firstPUD(a, b)
			mm.ptl.Unlock()
			if ok {
				r := NewRange(mm, EventProtectionVMA, s, b)
				InvalidateRangeStart(&r)
				mm.ptl.Lock()
				v.prot = prot
				mm.ptl.Unlock()
				InvalidateRangeEnd(&r)
			}
			a = b
		}
		v.prot = prot
	}
	mm.merge(lo, hi)
	return err
}

// Discard drops the pages of [addr, addr+length) but keeps the mappings:
// madvise(MADV_DONTNEED). Each VMA piece in the range is invalidated
// (MMU_NOTIFY_CLEAR, blockable), whether or not it has pages, as
// zap_page_range_single does; the pages are freed after the end and a
// later touch maps fresh zeroed ones. It takes mmap_lock for reading, so
// several goroutines can discard at once, and may sleep. Holes in the
// range are skipped; ErrNoMem says there were some. A zero length does
// nothing (do_madvise).
func (mm *MM) Discard(addr, length uint64) error {
	if addr%PageSize == 0 && length == 0 {
		return nil
	}
	end, err := checkRange(addr, length)
	if err != nil {
		return err
	}
	mm.mmapLock.RLock()
	defer mm.mmapLock.RUnlock()
	var hole bool
	a := addr
	for i := mm.find(addr); i < len(mm.vmas) && mm.vmas[i].start < end; i++ {
		v := mm.vmas[i]
		if v.start > a {
			hole = true
		}
		s, e := max(addr, v.start), min(end, v.end)
		r := NewRange(mm, EventClear, s, e)
		InvalidateRangeStart(&r)
		mm.ptl.Lock()
		freed := mm.zap(nil, s, e)
		mm.ptl.Unlock()
		InvalidateRangeEnd(&r)
		mm.freePages(freed)
		a = e
	}
	if hole || a < end {
		return ErrNoMem
	}
	return nil
}

// Fault makes the page at addr present, allocating a zeroed page from the
// zone if needed, as a CPU access would (handle_mm_fault), and returns its
// frame number. A write needs ProtWrite, a read ProtRead; else, or with no
// mapping at addr, it returns ErrFault. After the OOM reaper has run it
// returns ErrFault too (the kernel's SIGBUS for an unstable mm). It takes
// mmap_lock for reading and allocates with GFP_HIGHUSER_MOVABLE, so it may
// sleep and enter reclaim.
func (mm *MM) Fault(addr uint64, write bool) (uint64, error) {
	mm.mmapLock.RLock()
	defer mm.mmapLock.RUnlock()
	p, err := mm.faultLocked(addr, write)
	if err != nil {
		return 0, err
	}
	return p.PFN(), nil
}

// FaultLocked is Fault for a caller that holds mmap_lock, for reading or
// writing: handle_mm_fault itself, which get_user_pages_remote and
// make_device_exclusive_range reach under their caller's lock. Fault takes
// the lock on its own, as a CPU access does (lock_mm_and_find_vma), so
// code that already holds it would take it twice: recursive locking to
// lockdep, and a deadlock once a writer queues between the two. Without
// the lock held FaultLocked warns (lockdep_assert_held) and faults anyway.
func (mm *MM) FaultLocked(addr uint64, write bool) (uint64, error) {
	lockclass.AssertHeld(&mm.mmapLock)
	p, err := mm.faultLocked(addr, write)
	if err != nil {
		return 0, err
	}
	return p.PFN(), nil
}

// faultLocked is Fault with mmap_lock held.
func (mm *MM) faultLocked(addr uint64, write bool) (*gfp.Page, error) {
	v := mm.vmaAt(addr)
	if v == nil || write && v.prot&ProtWrite == 0 || !write && v.prot&ProtRead == 0 {
		return nil, ErrFault
	}
	if mm.flags.Load()&mmfUnstable != 0 {
		return nil, ErrFault
	}
	var fresh *gfp.Page
	var table *ptTable
	for {
		mm.ptl.Lock()
		e := mm.pt.lookup(addr)
		if (e == nil || e.page == nil) && fresh != nil {
			if e = mm.pt.set(addr, fresh, &table); e != nil {
				fresh = nil
				mm.rss.Add(1)
			}
		}
		if e != nil && e.page != nil {
			e.flags |= pteYoung
			if write {
				e.flags |= pteDirty | pteSoftDirty
				e.flags &^= pteWP
			}
			p := e.page
			mm.ptl.Unlock()
			if fresh != nil { // lost a race with another fault
				mm.zone.FreePages(fresh, 0)
			}
			return p, nil
		}
		needTable := e == nil
		mm.ptl.Unlock()
		if needTable && table == nil {
			table = new(ptTable) // __pte_alloc, before the lock
		}
		if fresh == nil {
			p, err := mm.zone.AllocPages(0, gfp.HighUserMovable|gfp.Zero)
			if err != nil {
				return nil, err
			}
			fresh = p
		}
	}
}

// Lookup returns the frame number of the page mapped at addr, if one is
// present (follow_page); it never faults. Unlike follow_page, whose caller
// holds mmap_lock, it takes mmap_lock for reading itself, so the caller
// must not hold it, nor a lock an invalidation takes (a driver's page-table
// lock): look up first, then take the driver lock and check ReadRetry.
func (mm *MM) Lookup(addr uint64) (pfn uint64, ok bool) {
	mm.mmapLock.RLock()
	defer mm.mmapLock.RUnlock()
	v := mm.vmaAt(addr)
	if v == nil {
		return 0, false
	}
	mm.ptl.Lock()
	defer mm.ptl.Unlock()
	if p := mm.pt.get(addr).page; p != nil {
		return p.PFN(), true
	}
	return 0, false
}

// Write copies data into the address space at addr, faulting pages in as
// a CPU store would (access_process_vm with FOLL_WRITE).
func (mm *MM) Write(addr uint64, data []byte) error {
	mm.MightFault()
	return mm.access(addr, data, true)
}

// Read copies from the address space at addr into buf, faulting pages in.
func (mm *MM) Read(addr uint64, buf []byte) error {
	mm.MightFault()
	return mm.access(addr, buf, false)
}

func (mm *MM) access(addr uint64, buf []byte, write bool) error {
	mm.mmapLock.RLock()
	defer mm.mmapLock.RUnlock()
	for len(buf) > 0 {
		page := addr &^ (PageSize - 1)
		p, err := mm.faultLocked(page, write)
		if err != nil {
			return err
		}
		off := addr % PageSize
		n := min(uint64(len(buf)), PageSize-off)
		// Discard and reclaim zap entries under the page-table lock and
		// free the pages only afterwards: if the entry still maps p here,
		// p stays ours until the lock is dropped. Otherwise fault again.
		mm.ptl.Lock()
		if mm.pt.get(page).page != p {
			mm.ptl.Unlock()
			continue
		}
		if write {
			copy(p.Bytes()[off:off+n], buf[:n])
		} else {
			copy(buf[:n], p.Bytes()[off:off+n])
		}
		mm.ptl.Unlock()
		buf, addr = buf[n:], addr+n
	}
	return nil
}
