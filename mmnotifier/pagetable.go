package mmnotifier

import (
	"cmp"
	"slices"

	"github.com/krules/krules/gfp"
)

// The page table of an address space. The kernel's is a radix tree whose
// table pages are allocated when a fault first needs them (__pte_alloc,
// pmd_install) and freed when the range they map is unmapped
// (free_pgtables), so a mapping nobody touched costs no page table at all,
// however large it is. krules keeps the last level, tables of PTRS_PER_PTE
// entries that each map 2 MiB, in a slice sorted by address that stands in
// for the upper levels: it holds one pointer per 2 MiB with a page in it.
// A table goes when its last present entry is cleared.
//
// The page table belongs to the address space, not to its VMAs, as in the
// kernel: splitting and merging VMAs leaves it alone. Everything here runs
// under the page-table lock.

const (
	ptrsPerPTE = 512                   // PTRS_PER_PTE
	pmdSize    = ptrsPerPTE * PageSize // PMD_SIZE: what one table maps
	pudSize    = 512 * pmdSize         // PUD_SIZE: what one PMD table maps
	pgdirSize  = 512 * pudSize         // PGDIR_SIZE (4 levels, P4D folded)
)

// pte is a page table entry. An entry is present if it has a page; its
// flags mean something only then.
type pte struct {
	page  *gfp.Page
	flags uint8
}

// pte flags.
const (
	pteYoung     = 1 << iota // accessed
	pteDirty                 // written
	pteSoftDirty             // written since the last ClearSoftDirty
	pteWP                    // write-protected by ClearSoftDirty
)

// ptTable is one table: the entries of the 2 MiB from base.
type ptTable struct {
	base    uint64 // a multiple of pmdSize
	present int    // entries with a page
	e       [ptrsPerPTE]pte
}

// pageTable is an address space's page table.
type pageTable struct {
	tables []*ptTable // sorted by base
}

// find returns the position of the table mapping addr, or where it would go.
func (pt *pageTable) find(addr uint64) (int, bool) {
	return slices.BinarySearchFunc(pt.tables, addr&^(pmdSize-1), func(t *ptTable, base uint64) int {
		return cmp.Compare(t.base, base)
	})
}

// lookup returns the entry of addr, or nil if no table maps addr
// (pte_offset_map's NULL).
func (pt *pageTable) lookup(addr uint64) *pte {
	i, ok := pt.find(addr)
	if !ok {
		return nil
	}
	return &pt.tables[i].e[addr%pmdSize/PageSize]
}

// get returns a copy of the entry of addr; the zero entry if none.
func (pt *pageTable) get(addr uint64) pte {
	if e := pt.lookup(addr); e != nil {
		return *e
	}
	return pte{}
}

// set maps p at addr, whose entry is not present, and returns the entry.
// If no table maps addr, *spare becomes that table (pmd_install) and
// *spare is set to nil; *spare must then be a zeroed table, which the
// caller allocated before it took the page-table lock, as __pte_alloc does.
// set reports nil if a table is needed and *spare is nil.
func (pt *pageTable) set(addr uint64, p *gfp.Page, spare **ptTable) *pte {
	i, ok := pt.find(addr)
	if !ok {
		if *spare == nil {
			return nil
		}
		t := *spare
		*spare = nil
		t.base = addr &^ (pmdSize - 1)
		pt.tables = slices.Insert(pt.tables, i, t)
	}
	t := pt.tables[i]
	e := &t.e[addr%pmdSize/PageSize]
	e.page = p
	t.present++
	return e
}

// span returns the entries [from, to) of t that lie in [start, end), which
// overlaps t.
func (t *ptTable) span(start, end uint64) (from, to int) {
	if start > t.base {
		from = int((start - t.base) / PageSize)
	}
	to = ptrsPerPTE
	if end-t.base < pmdSize {
		to = int((end - t.base + PageSize - 1) / PageSize)
	}
	return from, to
}

// walk calls fn for each present entry in [start, end), in address order,
// until fn returns false. fn may change the entry's flags and page but not
// clear it (zap does that).
func (pt *pageTable) walk(start, end uint64, fn func(addr uint64, e *pte) bool) {
	i, _ := pt.find(start)
	for ; i < len(pt.tables) && pt.tables[i].base < end; i++ {
		t := pt.tables[i]
		from, to := t.span(start, end)
		for k := from; k < to; k++ {
			if t.e[k].page != nil && !fn(t.base+uint64(k)*PageSize, &t.e[k]) {
				return
			}
		}
	}
}

// firstPUD returns the start of the first PUD-sized slot overlapping
// [start, end) whose PUD entry is populated (!pud_none), clamped to start:
// the slot of the lowest table mapping anything at or above the slot of
// start, since a PUD entry points to a PMD table as long as any table under
// it does. It reports false if no slot is populated.
func (pt *pageTable) firstPUD(start, end uint64) (uint64, bool) {
	i, _ := pt.find(start &^ (pudSize - 1))
	if i == len(pt.tables) {
		return 0, false
	}
	slot := pt.tables[i].base &^ (pudSize - 1)
	if slot >= end {
		return 0, false
	}
	return max(start, slot), true
}

// count returns the number of present entries in [start, end).
func (pt *pageTable) count(start, end uint64) int {
	n := 0
	i, _ := pt.find(start)
	for ; i < len(pt.tables) && pt.tables[i].base < end; i++ {
		t := pt.tables[i]
		from, to := t.span(start, end)
		if from == 0 && to == ptrsPerPTE {
			n += t.present
			continue
		}
		for k := from; k < to; k++ {
			if t.e[k].page != nil {
				n++
			}
		}
	}
	return n
}

// zap clears the present entries in [start, end), appends their pages to
// freed and returns it, and frees the tables that become empty
// (zap_pte_range, free_pte_range). freed grows at most once, to the number
// of entries cleared, as the mmu_gather's batches are allocated under the
// page-table lock without sleeping (tlb_next_batch, GFP_NOWAIT).
func (pt *pageTable) zap(start, end uint64, freed []*gfp.Page) []*gfp.Page {
	freed = slices.Grow(freed, pt.count(start, end))
	lo, _ := pt.find(start)
	hi, kept := lo, lo
	for ; hi < len(pt.tables) && pt.tables[hi].base < end; hi++ {
		t := pt.tables[hi]
		from, to := t.span(start, end)
		for k := from; k < to && t.present > 0; k++ {
			if p := t.e[k].page; p != nil {
				freed = append(freed, p)
				t.e[k] = pte{}
				t.present--
			}
		}
		if t.present > 0 {
			pt.tables[kept] = t
			kept++
		}
	}
	if kept < hi {
		n := copy(pt.tables[kept:], pt.tables[hi:])
		clear(pt.tables[kept+n:])
		pt.tables = pt.tables[:kept+n]
	}
	return freed
}
