package gfp

import (
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/list"
	"github.com/krules/krules/internal/splat"
	"github.com/krules/krules/lockclass"
)

// kmalloc on top of the page allocator: the kernel's kmalloc size classes
// (kmalloc-8 ... kmalloc-8k), each carving objects out of slabs (blocks of
// pages), with a magazine of free objects per class in every shard so that
// an allocation that hits it takes one uncontended lock. Larger requests
// get whole pages (kmalloc_large). Free finds an object's class from its
// address: the page descriptor of the page it lies in points to the slab.

// KmallocMaxCacheSize is KMALLOC_MAX_CACHE_SIZE: the largest size served by
// a size class. Larger allocations take whole pages.
const KmallocMaxCacheSize = 8192

var classSizes = [...]int{8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192}

const nClasses = len(classSizes)

const (
	magCap   = 32 // objects a shard caches per class
	magBatch = magCap / 2
	// keepEmpty is how many empty slabs a class keeps instead of giving
	// their pages back (SLUB's min_partial, much reduced).
	keepEmpty = 1
)

// smallIndex maps (size-1)/8 to a class for sizes up to 192, as the
// kernel's size_index table does (so that 65..96 use kmalloc-96).
var smallIndex = func() (t [24]uint8) {
	for i := range t {
		size := (i + 1) * 8
		for c, s := range classSizes {
			if s >= size {
				t[i] = uint8(c)
				break
			}
		}
	}
	return t
}()

// classIndex returns the class serving size (1..KmallocMaxCacheSize).
func classIndex(size int) int {
	if size <= 192 {
		return int(smallIndex[(size-1)>>3])
	}
	// 256 is class 7; each further power of two one more.
	return bits.Len(uint(size-1)) - 8 + 7
}

type magazine struct {
	n    int
	objs [magCap]uint64 // arena offsets
}

func (m *magazine) init() { m.n = 0 }

// sizeClass is one kmalloc cache (struct kmem_cache).
type sizeClass struct {
	name  string
	size  int
	order int // of its slabs
	objs  int // per slab

	mu      sync.Mutex
	partial list.List[slab] // slabs with objects to give
	nslabs  int
	nempty  int
}

// slab is one block of pages carved into objects of one class.
type slab struct {
	class *sizeClass
	head  int32
	off   uint64 // arena offset of object 0

	// Under class.mu:
	free   []uint16         // objects in the slab (not in a magazine, not live)
	inuse  int              // objects out of the slab: in magazines or live
	links  list.Links[slab] // in class.partial while listed
	listed bool

	// live has a bit per object held by a caller of Alloc; Free clears it,
	// which is how a second Free of the same object is caught.
	live []atomic.Uint64
}

func (z *Zone) setupClasses() {
	for i, size := range classSizes {
		order := 0
		for PageSize<<order < 4*size {
			order++
		}
		c := &z.classes[i]
		c.name = kmallocName(size)
		c.size = size
		c.order = order
		c.objs = PageSize << order / size
	}
}

func kmallocName(size int) string {
	if size >= 1024 {
		return fmt.Sprintf("kmalloc-%dk", size/1024)
	}
	return fmt.Sprintf("kmalloc-%d", size)
}

// Alloc allocates size bytes: kmalloc(). Sizes up to KmallocMaxCacheSize
// come from the kmalloc size classes, larger ones from whole pages. The
// result has length and capacity size; it is zeroed only with Zero. A size
// of 0 returns an empty, non-nil slice (ZERO_SIZE_PTR) that Free ignores.
// The flags work as for AllocPages, whose reports and errors Alloc shares
// when it needs a new slab.
func (z *Zone) Alloc(size int, flags Flags) ([]byte, error) {
	switch {
	case size == 0:
		return z.mem[:0:0], nil
	case size < 0:
		return nil, fmt.Errorf("gfp: kmalloc of %d bytes", size)
	case size > KmallocMaxCacheSize:
		// kmalloc_large: whole pages for sizes above the classes, spelled
		// out so that the page allocator's check finds Alloc, the entry,
		// as its caller's caller (fs_reclaim's "at:", mightAllocTask).
		order := bits.Len(uint((size - 1) >> PageShift))
		if flags&slabBugMask != 0 {
			flags = kmallocFixFlags(flags)
		}
		p, err := z.allocPagesChecked(order, flags|Comp, pgLarge, true)
		if err != nil {
			return nil, err
		}
		off := p.index() << PageShift
		return z.mem[off : off+size : off+size], nil
	}
	if z.closed.Load() {
		return nil, ErrClosed
	}
	ci := classIndex(size)
	t, pf := currentTask()
	gfp := applyContext(flags, pf)
	mightAllocTask(gfp, t, pf, callerSite)
	// should_failslab charges space with the cache's object_size: the
	// size class, not the size asked for.
	if fa := z.failSlab.Load(); fa != nil && fa.shouldFailSlab(gfp, classSizes[ci]) {
		z.stats.slabInjected.Add(1)
		return nil, ErrNoMemory
	}
	s := z.lockShard()
	m := &s.mags[ci]
	if m.n > 0 {
		m.n--
		off := m.objs[m.n]
		s.ev.kmallocs++
		s.mu.Unlock()
		return z.handOut(off, size, gfp), nil
	}
	s.mu.Unlock()
	return z.allocRefill(ci, size, gfp)
}

// allocRefill takes a batch of objects from the class (growing it by a
// slab if it has none), keeps one and caches the rest in the shard.
func (z *Zone) allocRefill(ci, size int, gfp Flags) ([]byte, error) {
	c := &z.classes[ci]
	var batch [magBatch]uint64
	n, err := z.classRefill(c, gfp, batch[:])
	if err != nil {
		return nil, err
	}
	off := batch[n-1]
	n--
	s := z.lockShard()
	m := &s.mags[ci]
	k := min(n, magCap-m.n)
	m.n += copy(m.objs[m.n:], batch[:k])
	s.ev.kmallocs++
	s.mu.Unlock()
	if k < n {
		z.classDrain(c, batch[k:n])
	}
	return z.handOut(off, size, gfp), nil
}

// handOut marks the object live and returns it.
func (z *Zone) handOut(off uint64, size int, gfp Flags) []byte {
	sl := z.pages[off>>PageShift].slab.Load()
	i := (off - sl.off) / uint64(sl.class.size)
	sl.live[i/64].Or(1 << (i % 64))
	b := z.mem[off : off+uint64(size) : off+uint64(size)]
	if gfp&Zero != 0 {
		clear(b)
	}
	return b
}

// classRefill fills out with objects of class c, allocating a slab with gfp
// when the class has none. It returns at least one object or an error.
func (z *Zone) classRefill(c *sizeClass, gfp Flags, out []uint64) (int, error) {
	c.mu.Lock()
	for c.partial.Empty() {
		c.mu.Unlock()
		sl, err := z.newSlab(c, gfp)
		if err != nil {
			return 0, err
		}
		c.mu.Lock()
		c.nslabs++
		c.nempty++
		c.link(sl)
	}
	n := 0
	for n < len(out) && !c.partial.Empty() {
		sl := c.partial.Front().Elem()
		if sl.inuse == 0 {
			c.nempty--
		}
		for n < len(out) && len(sl.free) > 0 {
			i := sl.free[len(sl.free)-1]
			sl.free = sl.free[:len(sl.free)-1]
			sl.inuse++
			out[n] = sl.off + uint64(i)*uint64(c.size)
			n++
		}
		if len(sl.free) == 0 {
			c.unlink(sl)
		}
	}
	c.mu.Unlock()
	return n, nil
}

// newSlab allocates and carves a block for class c (new_slab and
// allocate_slab).
func (z *Zone) newSlab(c *sizeClass, gfp Flags) (*slab, error) {
	if gfp&slabBugMask != 0 {
		gfp = kmallocFixFlags(gfp)
	}
	// No might_alloc: the kmalloc that grows the slab has checked these
	// flags (slab_pre_alloc_hook), and checking again would report one bad
	// call twice, which the kernel's __might_resched rate limit prevents.
	p, err := z.allocPagesChecked(c.order, gfp&^Zero|Comp, pgSlab, false)
	if err != nil {
		return nil, err
	}
	head := int32(p.index())
	sl := &slab{
		class: c,
		head:  head,
		off:   uint64(head) << PageShift,
		free:  make([]uint16, c.objs),
		live:  make([]atomic.Uint64, (c.objs+63)/64),
	}
	for i := range sl.free {
		sl.free[i] = uint16(c.objs - 1 - i)
	}
	for i := range int32(1) << c.order {
		z.pages[head+i].slab.Store(sl)
	}
	return sl, nil
}

func (c *sizeClass) link(sl *slab) {
	c.partial.PushFront(sl, &sl.links)
	sl.listed = true
}

func (c *sizeClass) unlink(sl *slab) {
	c.partial.Remove(&sl.links)
	sl.listed = false
}

// classDrain gives objects back to their slabs, and the pages of slabs
// that become empty beyond keepEmpty back to the buddy lists.
func (z *Zone) classDrain(c *sizeClass, objs []uint64) {
	var release []*slab
	c.mu.Lock()
	for _, off := range objs {
		sl := z.pages[off>>PageShift].slab.Load()
		sl.free = append(sl.free, uint16((off-sl.off)/uint64(c.size)))
		sl.inuse--
		if !sl.listed {
			c.link(sl)
		}
		if sl.inuse == 0 {
			c.nempty++
			if c.nempty > keepEmpty {
				c.unlink(sl)
				c.nempty--
				c.nslabs--
				release = append(release, sl)
			}
		}
	}
	c.mu.Unlock()
	for _, sl := range release {
		z.releaseSlab(sl)
	}
}

// releaseSlab returns an empty slab's block straight to the buddy lists.
// It takes only the zone lock, so callers may hold shard and class locks.
func (z *Zone) releaseSlab(sl *slab) {
	order := sl.class.order
	z.noteFreed(1 << order)
	for i := range int32(1) << order {
		z.pages[sl.head+i].slab.Store(nil)
	}
	z.pages[sl.head].state.Store(pageState(pgFreeing, order))
	z.mu.Lock()
	z.freeOne(sl.head, order)
	z.nrFree.Add(1 << order)
	z.stats.highFrees += 1 << order
	z.mu.Unlock()
}

// drainSlabs empties every shard's magazines back into their classes.
func (z *Zone) drainSlabs() {
	for i := range z.shards {
		s := &z.shards[i]
		s.mu.Lock()
		for ci := range s.mags {
			m := &s.mags[ci]
			if m.n > 0 {
				z.classDrain(&z.classes[ci], m.objs[:m.n])
				m.n = 0
			}
		}
		s.mu.Unlock()
	}
	// Empty slabs kept for reuse go back too.
	for ci := range z.classes {
		c := &z.classes[ci]
		var release []*slab
		c.mu.Lock()
		for k := c.partial.Front(); k != nil; {
			sl, next := k.Elem(), k.Next()
			if sl.inuse == 0 {
				c.unlink(sl)
				c.nempty--
				c.nslabs--
				release = append(release, sl)
			}
			k = next
		}
		c.mu.Unlock()
		for _, sl := range release {
			z.releaseSlab(sl)
		}
	}
}

// slabBugMask is GFP_SLAB_BUG_MASK: DMA32 and HighMem, which slab memory
// cannot honour, and every bit outside BitsMask.
const slabBugMask = DMA32 | HighMem | ^BitsMask

// kmallocFixFlags is kmalloc_fix_flags, which new_slab and kmalloc_large
// call when flags hold GFP_SLAB_BUG_MASK bits: they are stripped, with a
// pr_warn and a stack dump (not a WARN: every time, and no taint). A
// kmalloc served by a slab that exists already is not checked, as in SLUB.
func kmallocFixFlags(gfp Flags) Flags {
	invalid := gfp & slabBugMask
	gfp &^= slabBugMask
	headline := fmt.Sprintf("Unexpected gfp: %#x (%s). Fixing up to gfp: %#x (%s). Fix your code!",
		uint32(invalid), invalid.decode(), uint32(gfp), gfp.decode())
	b := krules.NewReport(krules.GFPMisuse, headline, 0)
	b.Printf("%s\n", headline)
	b.Dump()
	krules.Emit(b.Report())
	return gfp
}

// Free frees memory Alloc returned: kfree(). A nil or empty slice (length
// 0, whatever its capacity) is ignored: it names no object, as
// ZERO_SIZE_PTR names none, so Free(b[:0]) frees nothing and cannot free an
// object its caller still holds through b. A second Free of the same
// object ("Object already free"), a pointer into the middle of an object
// ("Invalid object pointer"), memory Alloc did not return and memory of
// another zone are reported and left alone; but a single page from
// AllocPages is freed after a once-only WARNING, as free_large_kmalloc
// frees an order-0 folio.
func (z *Zone) Free(b []byte) {
	if len(b) == 0 {
		return
	}
	off := z.offsetOf(b)
	if off < 0 {
		z.reportKfreeForeign(b)
		return
	}
	pg := &z.pages[off>>PageShift]
	sl := pg.slab.Load()
	if sl == nil {
		z.freeLarge(pg, off)
		return
	}
	c := sl.class
	rel := uint64(off) - sl.off
	i := rel / uint64(c.size)
	if rel%uint64(c.size) != 0 {
		z.reportSlab(c, sl, uint64(off), fmt.Sprintf("Invalid object pointer 0x%x", z.arena.base()+uintptr(off)), false)
		return
	}
	bit := uint64(1) << (i % 64)
	if sl.live[i/64].And(^bit)&bit == 0 {
		z.reportSlab(c, sl, uint64(off), "Object already free", true)
		return
	}
	ci := classIndex(c.size)
	s := z.lockShard()
	m := &s.mags[ci]
	if m.n == magCap {
		z.classDrain(c, m.objs[:magBatch])
		m.n = copy(m.objs[:], m.objs[magBatch:m.n])
	}
	m.objs[m.n] = uint64(off)
	m.n++
	s.ev.kfrees++
	s.mu.Unlock()
}

// freeLarge frees a kmalloc_large block, as free_large_kmalloc does, and
// also a single page from AllocPages: its folio has order 0, which
// free_large_kmalloc meets with WARN_ON_ONCE(order == 0) and its "object
// pointer" pr_warn_once, then frees it all the same (folio_put). Anything
// else is a bad free: a pointer inside a block, memory that is not
// allocated, or a block of several pages from AllocPages, whose first page
// alone the kernel would free.
func (z *Zone) freeLarge(pg *Page, off int) {
	s := pg.state.Load()
	if off%PageSize == 0 && s == pageState(pgAlloc, 0) && pg.state.CompareAndSwap(s, pageState(pgFreeing, 0)) {
		if z.once.claim(warnKfreeOrder0) {
			krules.Emit(krules.Warn(krules.SlabError,
				fmt.Sprintf("WARN_ON_ONCE(order == 0): free_large_kmalloc: object pointer: 0x%x", z.arena.base()+uintptr(off)), 0))
		}
		z.freeBlock(int32(off>>PageShift), 0)
		return
	}
	if off%PageSize != 0 || stateKind(s) != pgLarge || !pg.state.CompareAndSwap(s, pageState(pgFreeing, stateOrder(s))) {
		z.badPage(pg.PFN(), s, "kfree() of memory kmalloc did not return")
		return
	}
	z.freeBlock(int32(off>>PageShift), stateOrder(s))
}

// reportSlab is SLUB's object_err ("BUG kmalloc-64 (Not tainted): Object
// already free"), whose print_trailer adds the object's line, or, unless
// object, slab_err ("Invalid object pointer"), which prints the slab only:
// there is no object at the pointer to describe.
func (z *Zone) reportSlab(c *sizeClass, sl *slab, off uint64, what string, object bool) {
	headline := fmt.Sprintf("BUG %s (%s): %s", c.name, splat.PrintTainted(), what)
	b := krules.NewReport(krules.SlabError, headline, 0)
	b.Header()
	b.Printf("\n")
	b.Printf("Slab 0x%x objects=%d zone=%s pfn:%#x\n", z.arena.base()+uintptr(sl.off), c.objs, z.name, z.startPFN+uint64(sl.head))
	if object {
		b.Printf("Object 0x%x @offset=%d\n", z.arena.base()+uintptr(off), off-sl.off)
	}
	b.Dump()
	krules.Emit(b.Report())
	lockclass.TaintNowUnreliable()
}

// reportKfreeForeign reports kfree of memory that is not in the zone:
// virt_to_cache's "Object is not a Slab page!".
func (z *Zone) reportKfreeForeign(b []byte) {
	_ = b
	krules.Emit(krules.Warn(krules.SlabError,
		fmt.Sprintf("kfree: Object is not a Slab page! (not in zone %s)", z.name), 0))
}
