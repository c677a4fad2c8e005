package gfp

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// ErrNoMemory is what every failed allocation returns (the kernel's NULL
// and -ENOMEM). Test for it with errors.Is.
var ErrNoMemory = errors.New("gfp: cannot allocate memory")

// ErrClosed is returned by allocations from a zone after Close.
var ErrClosed = errors.New("gfp: zone closed")

var errUnsupported = errors.New("gfp: mlock and huge pages need mmap, which this platform lacks")

// Zone is a memory zone with its own page allocator: a fixed arena split
// into 4 KiB pages, handed out by a buddy allocator (orders 0 to MaxOrder)
// behind per-CPU-style page caches, guarded by min/low/high watermarks with
// the kernel's reserve rules, refilled by direct reclaim and by the zone's
// kswapd goroutine running the registered shrinkers, and topped by
// kmalloc-style size classes (Alloc/Free).
//
// A Zone is safe for concurrent use. Close stops its kswapd.
type Zone struct {
	name     string
	arena    arena
	mem      []byte
	startPFN uint64
	pages    []Page // mem_map
	pageBase uintptr

	mu       sync.Mutex // zone->lock: the buddy free lists
	area     [NROrders]freeArea
	nrFree   atomic.Int64 // NR_FREE_PAGES: pages on the buddy lists
	nrBlocks [NROrders]atomic.Int64

	wmarkMu       sync.Mutex // serialises watermark updates
	minFreeKbytes int64      // set by the user, or 0 for the default
	scaleFactor   int64
	wmark         [4]atomic.Int64 // min, low, high, promo

	shards     []shard
	shardShift uint
	hints      [hintSlots]atomic.Uint64 // goroutine id<<8 | shard
	pcpBatch   int
	pcpHigh    int

	classes [nClasses]sizeClass

	reclaim    reclaimState
	reclaimers reclaimers
	kswapd     kswapd
	pfmemalloc pfmemallocWait // throttled direct reclaimers (throttle.go)
	oom        oomState
	stats      zoneStats
	once       warnOnce
	badPages   badPageLimit
	vm         vmAreas // the vmalloc areas (vmalloc.go)

	failPage atomic.Pointer[FaultAttr]
	failSlab atomic.Pointer[FaultAttr]

	closed atomic.Bool
}

// ZoneOption configures NewZone.
type ZoneOption func(*zoneConfig)

type zoneConfig struct {
	arena         arenaConfig
	name          string
	minFreeKbytes int64
	scaleFactor   int64
	shards        int
	noKswapd      bool
}

// WithName names the zone in reports and statistics ("Normal" by default).
func WithName(name string) ZoneOption { return func(c *zoneConfig) { c.name = name } }

// WithMlock locks the arena in memory (mlock), so it never faults or swaps,
// as DMA-style users want. NewZone fails if the lock is refused.
func WithMlock() ZoneOption { return func(c *zoneConfig) { c.arena.mlock = true } }

// WithHugePages backs the arena with huge pages: hugetlb pages if the system
// has them (the arena is then aligned to 2 MiB rather than to a MaxOrder
// block), else transparent huge pages (Linux only).
func WithHugePages() ZoneOption { return func(c *zoneConfig) { c.arena.huge = true } }

// WithPortableArena takes the arena from the Go heap instead of mmap, as on
// platforms without mmap.
func WithPortableArena() ZoneOption { return func(c *zoneConfig) { c.arena.portable = true } }

// WithMinFreeKbytes sets min_free_kbytes, the base of the watermarks,
// instead of the kernel's default of sqrt(16·size in KiB) clamped to
// [128 KiB, 256 MiB].
func WithMinFreeKbytes(kb int64) ZoneOption { return func(c *zoneConfig) { c.minFreeKbytes = kb } }

// WithWatermarkScaleFactor sets watermark_scale_factor (1..3000, default 10:
// the gap between watermarks is at least 0.1% of the zone).
func WithWatermarkScaleFactor(f int64) ZoneOption {
	return func(c *zoneConfig) { c.scaleFactor = f }
}

// WithShards sets the number of per-CPU-style page caches (rounded up to a
// power of two; default twice GOMAXPROCS). One shard serialises every
// allocation on the zone lock's shard, which tests of exact page counts like.
func WithShards(n int) ZoneOption { return func(c *zoneConfig) { c.shards = n } }

// WithoutKswapd creates the zone without a kswapd: only direct reclaim runs
// the shrinkers.
func WithoutKswapd() ZoneOption { return func(c *zoneConfig) { c.noKswapd = true } }

// NewZone creates a zone of size bytes (rounded up to whole pages). Its
// kswapd goroutine starts the first time an allocation wakes it.
func NewZone(size int, opts ...ZoneOption) (*Zone, error) {
	cfg := zoneConfig{name: "Normal", scaleFactor: 10, shards: 2 * runtime.GOMAXPROCS(0)}
	for _, o := range opts {
		o(&cfg)
	}
	if size <= 0 {
		return nil, fmt.Errorf("gfp: zone size %d", size)
	}
	if cfg.scaleFactor < 1 || cfg.scaleFactor > 3000 {
		return nil, fmt.Errorf("gfp: watermark_scale_factor %d out of 1..3000", cfg.scaleFactor)
	}
	if cfg.minFreeKbytes < 0 {
		return nil, fmt.Errorf("gfp: min_free_kbytes %d", cfg.minFreeKbytes)
	}
	npages := (size + PageSize - 1) / PageSize
	if npages > 1<<31-1 {
		return nil, fmt.Errorf("gfp: zone of %d pages is too large", npages)
	}
	cfg.arena.size = npages * PageSize
	a, err := newArena(cfg.arena)
	if err != nil {
		return nil, err
	}
	z := &Zone{
		name:          cfg.name,
		arena:         a,
		mem:           a.mem,
		startPFN:      uint64(a.base()) >> PageShift,
		pages:         make([]Page, npages),
		minFreeKbytes: cfg.minFreeKbytes,
		scaleFactor:   cfg.scaleFactor,
	}
	z.pageBase = uintptr(unsafe.Pointer(&z.pages[0]))
	for i := range z.pages {
		z.pages[i].zone = z
	}
	z.seedFreeLists()
	z.setupWatermarks()
	z.setupShards(cfg.shards)
	z.setupClasses()
	z.reclaim.init()
	z.kswapd.disabled = cfg.noKswapd
	return z, nil
}

// Name returns the zone's name.
func (z *Zone) Name() string { return z.name }

// Pages returns the number of pages the zone manages.
func (z *Zone) Pages() int { return len(z.pages) }

// StartPFN returns the frame number of the zone's first page
// (zone_start_pfn).
func (z *Zone) StartPFN() uint64 { return z.startPFN }

// Backing says where the arena came from: "memfd" (Linux: the pages can
// be mapped again, for Vmalloc), "mmap", "mmap+hugetlb",
// "mmap+thp" or "heap", and whether it is mlocked.
func (z *Zone) Backing() (kind string, locked bool) { return z.arena.backing, z.arena.locked }

// indexOf returns the memory-map index of p, or -1 if p is not one of this
// zone's descriptors.
func (z *Zone) indexOf(p *Page) int {
	off := uintptr(unsafe.Pointer(p)) - z.pageBase
	if off >= uintptr(len(z.pages))*unsafe.Sizeof(Page{}) || off%unsafe.Sizeof(Page{}) != 0 {
		return -1
	}
	return int(off / unsafe.Sizeof(Page{}))
}

// PageOf returns the descriptor of the page that holds b[0], or nil if b
// does not point into this zone: the kernel's virt_to_page.
func (z *Zone) PageOf(b []byte) *Page {
	idx := z.offsetOf(b)
	if idx < 0 {
		return nil
	}
	return &z.pages[idx>>PageShift]
}

// PageByPFN returns the descriptor of frame pfn, or nil if the zone does
// not span it: pfn_to_page.
func (z *Zone) PageByPFN(pfn uint64) *Page {
	if pfn < z.startPFN || pfn-z.startPFN >= uint64(len(z.pages)) {
		return nil
	}
	return &z.pages[pfn-z.startPFN]
}

// offsetOf returns the arena offset of b[0], or -1 if b is not in the arena.
func (z *Zone) offsetOf(b []byte) int {
	if cap(b) == 0 {
		return -1
	}
	off := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(z.mem)))
	if off >= uintptr(len(z.mem)) {
		return -1
	}
	return int(off)
}

// Close stops the zone's kswapd, empties its caches and, when every page
// has come back, unmaps its arena. Allocations fail with ErrClosed from
// then on, including those already in flight that have not taken a page
// yet; frees are still accepted. If pages are still allocated (or were
// taken by an allocation in flight), the arena stays mapped, so their
// holders do not fault, and Close says how many. Close is idempotent.
func (z *Zone) Close() error {
	if z.closed.Swap(true) {
		return nil
	}
	z.kswapd.stop()
	z.pfmemalloc.wakeAll() // throttled reclaimers see the zone closed
	z.drainAll()
	z.drainSlabs()
	// The fence against allocations in flight: they passed the closed
	// check on entry, but rmqueueSmallest checks again under the zone
	// lock. Counting under that lock sees every block taken before (an
	// allocation about to zero its page holds an allocated page, so the
	// arena stays mapped) and none can be taken after. Costs the
	// allocation fast path nothing.
	z.mu.Lock()
	free := z.nrFree.Load()
	z.mu.Unlock()
	if out := int64(len(z.pages)) - free; out > 0 {
		return fmt.Errorf("gfp: zone %s closed with %d pages still allocated; its memory stays mapped", z.name, out)
	}
	return z.arena.release()
}
