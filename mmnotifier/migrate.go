package mmnotifier

import (
	"github.com/krules/krules/gfp"
)

// Migrate moves the pages present in [addr, addr+length) to freshly
// allocated pages, copying their contents: migrate_vma_setup and
// migrate_vma_pages for system memory. The range is invalidated with
// MMU_NOTIFY_MIGRATE and owner (the pgmap owner a driver compares with its
// own to skip its own migrations), blockable. The new pages are allocated
// before the invalidation starts, the old ones freed after it ends. Every
// address must be mapped, else it returns ErrInvalid and invalidates
// nothing, as migrate_vma_setup refuses a range outside its VMA with
// -EINVAL; the range may span several VMAs, as a driver's loop over
// find_vma_intersection does. It returns the pages moved. It takes
// mmap_lock for reading and may sleep.
func (mm *MM) Migrate(addr, length uint64, owner any) (int, error) {
	end, err := checkRange(addr, length)
	if err != nil {
		return 0, err
	}
	mm.mmapLock.RLock()
	defer mm.mmapLock.RUnlock()
	for a := addr; a < end; {
		v := mm.vmaAt(a)
		if v == nil {
			return 0, ErrInvalid
		}
		a = v.end
	}
	mm.ptl.Lock()
	n := mm.pt.count(addr, end)
	mm.ptl.Unlock()
	fresh := make([]*gfp.Page, 0, n)
	for range n {
		p, err := mm.zone.AllocPages(0, gfp.HighUserMovable)
		if err != nil {
			mm.freePages(fresh)
			return 0, err
		}
		fresh = append(fresh, p)
	}
	r := NewRangeOwner(mm, EventMigrate, addr, end, owner)
	InvalidateRangeStart(&r)
	old := make([]*gfp.Page, 0, len(fresh))
	mm.ptl.Lock()
	mm.pt.walk(addr, end, func(_ uint64, e *pte) bool {
		if len(fresh) == 0 {
			return false // pages faulted in since the count stay
		}
		p := fresh[len(fresh)-1]
		fresh = fresh[:len(fresh)-1]
		copy(p.Bytes(), e.page.Bytes())
		old = append(old, e.page)
		e.page = p
		return true
	})
	mm.ptl.Unlock()
	InvalidateRangeEnd(&r)
	mm.freePages(old)
	mm.freePages(fresh) // pages that a concurrent Discard made unnecessary
	return len(old), nil
}

// ClearSoftDirty resets soft-dirty tracking of the whole address space:
// writing 4 to /proc/PID/clear_refs. Every entry loses its soft-dirty bit
// and is write-protected, so the next write marks it again; the whole
// address space is invalidated once with MMU_NOTIFY_SOFT_DIRTY, blockable,
// so secondary MMUs write-protect too. It takes mmap_lock for writing and
// may sleep.
func (mm *MM) ClearSoftDirty() {
	mm.mmapLock.Lock()
	defer mm.mmapLock.Unlock()
	r := NewRange(mm, EventSoftDirty, 0, ^uint64(0))
	InvalidateRangeStart(&r)
	mm.ptl.Lock()
	mm.pt.walk(0, ^uint64(0), func(_ uint64, e *pte) bool {
		e.flags = e.flags&^pteSoftDirty | pteWP
		return true
	})
	mm.ptl.Unlock()
	InvalidateRangeEnd(&r)
}

// SoftDirty reports whether the page at addr was written since the last
// ClearSoftDirty (the soft-dirty bit of /proc/PID/pagemap).
func (mm *MM) SoftDirty(addr uint64) bool {
	mm.mmapLock.RLock()
	defer mm.mmapLock.RUnlock()
	if mm.vmaAt(addr) == nil {
		return false
	}
	mm.ptl.Lock()
	defer mm.ptl.Unlock()
	e := mm.pt.get(addr)
	return e.page != nil && e.flags&pteSoftDirty != 0
}
