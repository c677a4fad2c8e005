package gfp

import (
	"sync/atomic"
	"unsafe"
)

const (
	// PageShift is log2(PageSize).
	PageShift = 12
	// PageSize is the size of a page: 4 KiB.
	PageSize = 1 << PageShift
	// MaxOrder is MAX_PAGE_ORDER: the largest order AllocPages accepts
	// (inclusive), a 4 MiB block.
	MaxOrder = 10
	// NROrders is NR_PAGE_ORDERS.
	NROrders = MaxOrder + 1
	// CostlyOrder is PAGE_ALLOC_COSTLY_ORDER: above it the allocator gives
	// up early and never calls the OOM hook.
	CostlyOrder = 3
)

// Page is a page descriptor (struct page), the handle AllocPages returns for
// a block of 1<<order pages: the descriptor of its first page. Descriptors
// live in the zone's memory map for as long as the zone does; a handle is a
// pointer into it, so handing one out allocates nothing.
type Page struct {
	// state packs the page's kind (low byte) and the order of the block it
	// heads (next byte). It is atomic because FreePages validates a handle
	// before it takes any lock, and two racing frees must not both win.
	state atomic.Uint32
	// next and prev link free blocks on the buddy free lists (zone lock).
	next, prev int32
	// slab is set on every page of a slab (kmalloc) block.
	slab atomic.Pointer[slab]
	zone *Zone
	// Descriptors are 64 bytes, like the kernel's struct page, so that two
	// goroutines working on neighbouring pages never share a cache line.
	_ [32]byte
}

// Kinds of page.
const (
	pgTail    uint32 = iota // inside a block, not its head
	pgFree                  // head of a free block on a buddy list
	pgAlloc                 // head of a block handed out by AllocPages
	pgPCP                   // head of a block cached on a per-CPU-style list
	pgSlab                  // head of a block backing a kmalloc size class
	pgLarge                 // head of a block handed out by Alloc (kmalloc_large)
	pgFreeing               // being freed: claimed by one FreePages
)

var kindNames = [...]string{"tail", "buddy", "allocated", "pcp", "slab", "large_kmalloc", "freeing"}

func pageState(kind uint32, order int) uint32 { return kind | uint32(order)<<8 }

func stateKind(s uint32) uint32 { return s & 0xff }
func stateOrder(s uint32) int   { return int(s >> 8) }

// index returns the page's position in its zone's memory map.
func (p *Page) index() int { return p.zone.indexOf(p) }

// PFN returns the page frame number: the page's address divided by the page
// size. Frame numbers are unique across zones, as in the kernel.
func (p *Page) PFN() uint64 { return p.zone.startPFN + uint64(p.index()) }

// Order returns the order of the block the page heads, as recorded when it
// was allocated.
func (p *Page) Order() int { return stateOrder(p.state.Load()) }

// Bytes returns the block's memory: PageSize<<Order() bytes of the zone's
// arena. It stays valid until the block is freed; using it after that is a
// use-after-free, as in the kernel.
func (p *Page) Bytes() []byte {
	off := p.index() << PageShift
	n := PageSize << p.Order()
	return p.zone.mem[off : off+n : off+n]
}

// InUse reports whether the page heads a block AllocPages handed out and
// nobody has freed yet (the kernel's page_count() != 0 for a head page).
func (p *Page) InUse() bool { return stateKind(p.state.Load()) == pgAlloc }

// Zone returns the zone the page belongs to.
func (p *Page) Zone() *Zone { return p.zone }

var _ = [1]struct{}{}[unsafe.Sizeof(Page{})-64]
