package gfp

import (
	"fmt"
	"math"
	"sync"
	"unsafe"

	"github.com/krules/krules"
	"github.com/krules/krules/nonblock"
)

// vmAreas are a zone's vmalloc areas (the kernel's vmap_area tree), by the
// address of their first byte.
type vmAreas struct {
	mu    sync.Mutex
	areas map[uintptr]*vmArea
}

// vmArea is struct vm_struct: where the area is and the pages behind it.
type vmArea struct {
	addr   unsafe.Pointer
	size   int     // bytes asked for
	pages  []int32 // arena page indexes, in address order
	mapped bool    // a vmap of the pages; otherwise pages[0] heads one block
	order  int     // that block's order, when not mapped
}

// Vmalloc allocates size bytes of virtually contiguous memory built from
// order-0 pages of the zone: __vmalloc(size, flags); vmalloc(size) is
// Vmalloc(size, Kernel) and vzalloc adds Zero. The pages count against the
// watermarks and go through reclaim and fault injection like any others
// (allocated with NoWarn and HighMem, as __vmalloc_area_node asks, so the
// default fault injection spares them), and the area is
// their second mapping, so the memory need not be physically contiguous
// and no order limit applies. Vmalloc may sleep (alloc_vmap_area's
// might_sleep): in a non-block or atomic section it is reported. It checks
// the context as an allocation with flags would (might_alloc), and the
// page tables it would need as GFP_KERNEL under the scope that flags'
// missing FS and IO imply (__vmalloc_area_node's memalloc_nofs_save and
// memalloc_noio_save), which is why the kernel does not support
// non-blocking flags here: they are not refused, but checked as the
// kernel's page-table allocation would be.
//
// A size of 0 warns once (WARN_ON_ONCE(!size)) and fails with
// ErrNoMemory. A size whose whole pages outnumber the zone's is reported
// ("vmalloc error: size N, exceeds total pages") unless NoWarn and fails,
// as does a page that cannot be had ("failed to allocate pages", with the
// HighMem the pages were asked with), after the pages already taken are
// freed. Both reports show flags as passed, not as the goroutine's scopes
// narrow them. Free the area with Vfree (or Kvfree).
//
// The second mapping needs a zone backed by a memfd (Backing "memfd", the
// default on Linux). On any other arena the pages cannot be mapped twice,
// and Vmalloc takes one physically contiguous block of the smallest order
// that holds size instead: the same accounting, but it can fail under
// fragmentation where vmalloc would not, and it is limited to MaxOrder.
func (z *Zone) Vmalloc(size int, flags Flags) ([]byte, error) {
	if z.closed.Load() {
		return nil, ErrClosed
	}
	// __vmalloc_node_range_noprof checks the size before anything that
	// may sleep, and reports with the caller's flags (the scopes apply in
	// the page allocator): WARN_ON_ONCE(!size), then warn_alloc for more
	// whole pages than there are (size >> PAGE_SHIFT > totalram_pages(),
	// the size not rounded up: a part page more is left to the page
	// allocation to refuse).
	if size == 0 {
		if z.once.claim(warnVmallocZeroSize) {
			krules.Emit(krules.Warn(krules.GFPMisuse, "WARN_ON_ONCE(!size): vmalloc of 0 bytes", 0))
		}
		return nil, ErrNoMemory
	}
	if size < 0 || size>>PageShift > len(z.pages) {
		z.warnAllocMsg(flags, fmt.Sprintf("vmalloc error: size %d, exceeds total pages", uint(size)))
		return nil, ErrNoMemory
	}
	nonblock.MightSleep()
	t, pf := currentTask()
	gfp := applyContext(flags, pf)
	mightAllocTask(gfp, t, pf, callerSite)
	mightAllocTask(applyContext(Kernel&^(FS|IO)|gfp&(FS|IO), pf), t, pf, callerSite) // the page tables
	// __vmalloc_area_node adds __GFP_HIGHMEM unless DMA or DMA32 is asked
	// for, to the pages and to its failure report; fail_page_alloc's
	// ignore-gfp-highmem then spares the pages, as the kernel's.
	if flags&(DMA|DMA32) == 0 {
		flags |= HighMem
	}
	npages := (size + PageSize - 1) >> PageShift
	if z.arena.file < 0 {
		return z.vmallocContiguous(size, npages, flags)
	}
	pages := make([]int32, 0, npages)
	for range npages {
		p, err := z.allocPagesChecked(0, flags|NoWarn, pgAlloc, false)
		if err != nil {
			z.freeVmPages(pages)
			if err == ErrNoMemory {
				z.warnAllocMsg(flags, fmt.Sprintf("vmalloc error: size %d, failed to allocate pages", len(pages)*PageSize))
			}
			return nil, err
		}
		pages = append(pages, int32(p.index()))
	}
	addr, err := vmap(z.arena.file, pages)
	if err != nil {
		z.freeVmPages(pages)
		z.warnAllocMsg(flags, fmt.Sprintf("vmalloc error: size %d, vm_struct allocation failed: %v", size, err))
		return nil, ErrNoMemory
	}
	z.vm.add(&vmArea{addr: addr, size: size, pages: pages, mapped: true})
	return unsafe.Slice((*byte)(addr), size), nil
}

// vmallocContiguous is Vmalloc on an arena whose pages cannot be mapped
// twice: one block of the smallest order that holds npages pages. gfp are
// the caller's flags with HighMem added.
func (z *Zone) vmallocContiguous(size, npages int, gfp Flags) ([]byte, error) {
	order := 0
	for 1<<order < npages {
		order++
	}
	if order > MaxOrder {
		z.warnAllocMsg(gfp, fmt.Sprintf("vmalloc error: size %d, no vmap on a %s arena", size, z.arena.backing))
		return nil, ErrNoMemory
	}
	p, err := z.allocPagesChecked(order, gfp|NoWarn, pgAlloc, false)
	if err != nil {
		if err == ErrNoMemory {
			z.warnAllocMsg(gfp, fmt.Sprintf("vmalloc error: size %d, failed to allocate pages", 0))
		}
		return nil, err
	}
	off := p.index() << PageShift
	b := z.mem[off : off+size : off+size]
	z.vm.add(&vmArea{addr: unsafe.Pointer(unsafe.SliceData(b)), size: size, pages: []int32{int32(p.index())}, order: order})
	return b, nil
}

// freeVmPages frees the order-0 pages of an area.
func (z *Zone) freeVmPages(pages []int32) {
	for _, idx := range pages {
		z.FreePages(&z.pages[idx], 0)
	}
}

func (v *vmAreas) add(a *vmArea) {
	v.mu.Lock()
	if v.areas == nil {
		v.areas = map[uintptr]*vmArea{}
	}
	v.areas[uintptr(a.addr)] = a
	v.mu.Unlock()
}

// take removes and returns the area that starts at addr, or nil.
func (v *vmAreas) take(addr uintptr) *vmArea {
	v.mu.Lock()
	defer v.mu.Unlock()
	a := v.areas[addr]
	delete(v.areas, addr)
	return a
}

// find returns the area that holds addr, or nil.
func (v *vmAreas) find(addr uintptr) *vmArea {
	v.mu.Lock()
	defer v.mu.Unlock()
	if a := v.areas[addr]; a != nil {
		return a
	}
	for start, a := range v.areas {
		if addr-start < uintptr(len(a.pages))<<PageShift || (!a.mapped && addr-start < uintptr(a.size)) {
			return a
		}
	}
	return nil
}

// IsVmalloc reports whether b points into an area Vmalloc returned:
// is_vmalloc_addr.
func (z *Zone) IsVmalloc(b []byte) bool {
	if cap(b) == 0 || z.arena.file >= 0 && z.offsetOf(b) >= 0 {
		return false // a memfd zone's areas are second mappings, never in the arena
	}
	return z.vm.find(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) != nil
}

// Vfree frees an area Vmalloc returned: vfree(). It may sleep (the kernel's
// vfree outside interrupts does might_sleep), unmaps the area and frees its
// pages. A nil or empty slice is ignored; anything that is not the start of
// an area of this zone is reported ("Trying to vfree() nonexistent vm
// area") and left alone.
func (z *Zone) Vfree(b []byte) {
	if cap(b) == 0 {
		return
	}
	nonblock.MightSleep()
	addr := unsafe.Pointer(unsafe.SliceData(b))
	a := z.vm.take(uintptr(addr))
	if a == nil {
		krules.Emit(krules.Warn(krules.SlabError,
			fmt.Sprintf("Trying to vfree() nonexistent vm area (%p)", addr), 0))
		return
	}
	if !a.mapped {
		z.FreePages(&z.pages[a.pages[0]], a.order)
		return
	}
	if err := vunmap(a.addr, len(a.pages)); err != nil {
		// The pages stay allocated rather than be handed out while still
		// mapped here.
		krules.Emit(krules.Warn(krules.SlabError,
			fmt.Sprintf("vfree(%p): unmapping the area failed: %v; its %d pages are leaked", addr, err, len(a.pages)), 0))
		return
	}
	z.freeVmPages(a.pages)
}

// Kvmalloc allocates size bytes, from the slab if it can be had easily and
// else from Vmalloc: kvmalloc(). Above a page the slab attempt adds NoWarn
// and, unless the caller asked for RetryMayFail, NoRetry, and drops NoFail
// (the vmalloc fallback implements it), so that it gives up early. The
// fallback is taken only if flags allow blocking (gfpflags_allow_blocking):
// for a non-blocking request the slab's answer is final. A size over
// math.MaxInt32 (INT_MAX) is refused, with a warning once per zone unless
// NoWarn. Free the
// result with Kvfree.
func (z *Zone) Kvmalloc(size int, flags Flags) ([]byte, error) {
	slabFlags := flags
	if size > PageSize {
		slabFlags |= NoWarn
		if slabFlags&RetryMayFail == 0 {
			slabFlags |= NoRetry
		}
		slabFlags &^= NoFail
	}
	b, err := z.Alloc(size, slabFlags)
	if err == nil || size <= PageSize || err == ErrClosed {
		return b, err
	}
	if !flags.AllowsBlocking() {
		return nil, err
	}
	if size > math.MaxInt32 {
		// WARN_ON_ONCE(!(flags & __GFP_NOWARN)): a NoWarn call does not
		// use up the once.
		if flags&NoWarn == 0 && z.once.claim(warnKvmallocTooLarge) {
			krules.Emit(krules.Warn(krules.GFPMisuse,
				fmt.Sprintf("kvmalloc of %d bytes: more than INT_MAX", size), 0))
		}
		return nil, ErrNoMemory
	}
	return z.Vmalloc(size, flags)
}

// Kvfree frees memory Kvmalloc returned, whichever way it was allocated:
// kvfree(), Vfree for a vmalloc area (is_vmalloc_addr) and Free otherwise.
func (z *Zone) Kvfree(b []byte) {
	if z.IsVmalloc(b) {
		z.Vfree(b)
		return
	}
	z.Free(b)
}
