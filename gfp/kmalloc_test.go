package gfp_test

import (
	"math/rand/v2"
	"sync"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

func TestKmallocSizes(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 16<<20)
	var all [][]byte
	for size := 1; size <= 3*gfp.PageSize; size += 37 {
		b, err := z.Alloc(size, gfp.Kernel)
		require.NoError(t, err)
		require.Len(t, b, size)
		require.Equal(t, size, cap(b), "no access beyond the request")
		for i := range b {
			b[i] = byte(size)
		}
		all = append(all, b)
	}
	for _, b := range all {
		for i := range b {
			require.Equal(t, byte(len(b)), b[i], "objects do not overlap")
		}
		z.Free(b)
	}
	require.Zero(t, z.Stats().Kmallocs-z.Stats().Kfrees)
}

func TestKmallocAlignmentAndClasses(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	for _, c := range []struct{ size, align int }{{8, 8}, {64, 64}, {65, 32}, {96, 32}, {200, 256}, {4096, 4096}, {9000, 4096}} {
		b, err := z.Alloc(c.size, gfp.Kernel)
		require.NoError(t, err)
		require.Zero(t, uintptr(unsafe.Pointer(&b[0]))%uintptr(c.align), "size %d", c.size)
		z.Free(b)
	}
}

// kmalloc_fix_flags: a new slab, or a large kmalloc, asked with
// GFP_SLAB_BUG_MASK flags has them stripped with a warning each time; an
// object from a slab that exists is not checked.
func TestKmallocFixesSlabBugFlags(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 4<<20, gfp.WithShards(1))
	a, err := z.Alloc(64, gfp.Kernel|gfp.HighMem)
	require.NoError(t, err)
	require.Equal(t, []krules.Kind{krules.GFPMisuse}, rec.Kinds())
	require.Equal(t, "Unexpected gfp: 0x2 (__GFP_HIGHMEM). Fixing up to gfp: 0xcc0 (GFP_KERNEL). Fix your code!", rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "gfp.(*Zone).Alloc+", "dump_stack")
	b, err := z.Alloc(64, gfp.Kernel|gfp.HighMem)
	require.NoError(t, err)
	require.Equal(t, 1, rec.Len(), "the slab exists: no new_slab, no check")

	c, err := z.Alloc(3*gfp.PageSize, gfp.Kernel|gfp.DMA32)
	require.NoError(t, err)
	require.Equal(t, 2, rec.Len())
	require.Equal(t, "Unexpected gfp: 0x4 (GFP_DMA32). Fixing up to gfp: 0xcc0 (GFP_KERNEL). Fix your code!", rec.Last().Headline)
	for _, x := range [][]byte{a, b, c} {
		z.Free(x)
	}

	// Stripped, HighMem no longer spares a large kmalloc's pages from
	// fail_page_alloc (ignore-gfp-highmem).
	attr := quietAttr(100, 1)
	attr.IgnoreGFPWait = false
	z.InjectPageAllocFaults(attr)
	_, err = z.Alloc(3*gfp.PageSize, gfp.Kernel|gfp.HighMem|gfp.NoWarn)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, 3, rec.Len())
}

func TestKmallocZeroAndEmpty(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20, gfp.WithShards(1))
	b, err := z.Alloc(64, gfp.Kernel)
	require.NoError(t, err)
	for i := range b {
		b[i] = 0xff
	}
	z.Free(b)
	c, err := z.Alloc(64, gfp.Kernel|gfp.Zero)
	require.NoError(t, err)
	require.Equal(t, &b[0], &c[0], "the object was reused")
	require.Equal(t, make([]byte, 64), c)
	z.Free(c)

	e, err := z.Alloc(0, gfp.Kernel)
	require.NoError(t, err)
	require.NotNil(t, e)
	require.Empty(t, e)
	z.Free(e)   // ZERO_SIZE_PTR
	z.Free(nil) // NULL
	_, err = z.Alloc(-1, gfp.Kernel)
	require.Error(t, err)
}

// The rule for empty slices is the one Free's doc states: a slice of
// length 0 names no object (Alloc(0)'s ZERO_SIZE_PTR is one) and is
// ignored, whatever its capacity, so Free(b[:0]) frees nothing and a later
// Free(b) is the object's only free.
func TestFreeIgnoresEmptySlices(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20, gfp.WithShards(1))
	for _, size := range []int{64, 3 * gfp.PageSize} {
		b, err := z.Alloc(size, gfp.Kernel)
		require.NoError(t, err)
		before := z.Stats()
		z.Free(b[:0])
		z.Free(b[size:])
		require.Equal(t, before, z.Stats(), "nothing was freed")
		z.Free(b) // no "Object already free"
	}
}

func TestKfreeMisuseIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 4<<20)
	b, err := z.Alloc(64, gfp.Kernel)
	require.NoError(t, err)
	z.Free(b)
	z.Free(b)
	require.Equal(t, []krules.Kind{krules.SlabError}, rec.Kinds())
	require.Regexp(t, `^BUG kmalloc-64 \((Not tainted|Tainted: G[ A-Z]{18})\): Object already free$`, rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "Object 0x")

	c, err := z.Alloc(64, gfp.Kernel)
	require.NoError(t, err)
	z.Free(c[8:])
	require.Regexp(t, `^BUG kmalloc-64 \(.*\): Invalid object pointer 0x[0-9a-f]+$`, rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "\nSlab 0x")
	require.NotContains(t, rec.Last().Text, "Object 0x", "slab_err prints no trailer")
	z.Free(c) // still live: this one is fine

	z.Free(make([]byte, 10))
	require.Equal(t, krules.SlabError, rec.Last().Kind)
	require.Contains(t, rec.Last().Text, "kfree: Object is not a Slab page!")
	require.Regexp(t, `^WARNING: CPU: - PID: \d+ at gfp/kmalloc_test.go:`, rec.Last().Headline)

	p, err := z.AllocPages(1, gfp.Kernel)
	require.NoError(t, err)
	z.Free(p.Bytes())
	require.Equal(t, krules.BadPage, rec.Last().Kind, "two pages of the page allocator")
	require.Contains(t, rec.Last().Text, "page dumped because: kfree() of memory kmalloc did not return")
	z.FreePages(p, 1)

	big, err := z.Alloc(3*gfp.PageSize, gfp.Kernel)
	require.NoError(t, err)
	z.Free(big)
	n := rec.Len()
	z.Free(big)
	require.Equal(t, n+1, rec.Len())
	require.Equal(t, krules.BadPage, rec.Last().Kind, "a large kmalloc freed twice")
	require.Equal(t, 5, rec.Len())
}

// KMALLOC_MAX_CACHE_SIZE (two pages) is still served by a size class,
// kmalloc-8k, as kmalloc sends only larger sizes to kmalloc_large; the
// classes from 1024 bytes up are named in kilobytes as kmalloc_info names
// them. SLUB's reports name the class.
func TestKmallocClassesUpToMaxCacheSizeNamedAsTheKernels(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 4<<20)
	for size, name := range map[int]string{512: "kmalloc-512", 1024: "kmalloc-1k", gfp.KmallocMaxCacheSize: "kmalloc-8k"} {
		b, err := z.Alloc(size, gfp.Kernel)
		require.NoError(t, err)
		z.Free(b)
		z.Free(b)
		require.Equal(t, krules.SlabError, rec.Last().Kind, "size %d", size)
		require.Regexp(t, `^BUG `+name+` \(.*\): Object already free$`, rec.Last().Headline)
	}
}

// SLUB's slab_bug prints the taint as every report header does
// (print_tainted): after a WARNING the kernel is tainted W, and the
// "BUG kmalloc-N" headline says so. object_err then taints B with
// LOCKDEP_NOW_UNRELIABLE (add_taint): the next headline shows B beside W,
// and lock debugging is off, said once.
func TestSlabReportNamesTheTaint(t *testing.T) {
	rec := krulestest.Record(t)
	krulestest.ResetDefault(t)
	krules.Reset()
	t.Cleanup(krules.Reset)
	log := krulestest.CaptureLog(t)
	z := newZone(t, 4<<20)
	z.Free(make([]byte, 10)) // a WARNING: taints W
	b, err := z.Alloc(64, gfp.Kernel)
	require.NoError(t, err)
	z.Free(b)
	z.Free(b)
	require.Equal(t, "BUG kmalloc-64 (Tainted: G        W         ): Object already free", rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "\nTainted: [W]=WARN\n")
	require.False(t, lockclass.Default().Enabled(), "LOCKDEP_NOW_UNRELIABLE turned lock debugging off")
	require.Equal(t, "Disabling lock debugging due to kernel taint\n", log.String())
	z.Free(b)
	require.Equal(t, "BUG kmalloc-64 (Tainted: G    B   W         ): Object already free", rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "\nTainted: [B]=BAD_PAGE, [W]=WARN\n")
	require.Equal(t, "Disabling lock debugging due to kernel taint\n", log.String(), "said once, when it turned off")
}

// kmalloc_large takes the smallest block of pages that holds the request,
// get_order(size): four pages for four pages' worth, not eight.
func TestLargeKmallocTakesTheOrderItNeeds(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20, gfp.WithShards(1))
	for _, c := range []struct{ size, pages int }{{4 * gfp.PageSize, 4}, {4*gfp.PageSize + 1, 8}, {3 * gfp.PageSize, 4}} {
		before := accounted(z)
		b, err := z.Alloc(c.size, gfp.Kernel)
		require.NoError(t, err)
		require.Equal(t, int64(c.pages), before-accounted(z), "size %d", c.size)
		z.Free(b)
	}
}

// kfree of a single page from the page allocator is free_large_kmalloc's
// order-0 folio: WARN_ON_ONCE(order == 0) with the object pointer, once a
// zone, and the page is freed all the same (folio_put), so freeing it
// again with FreePages is a double free.
func TestKfreeOfAnOrder0PageWarnsOnceAndFreesIt(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 4<<20)
	st := z.Stats()
	before := st.Free + st.PCP
	for range 2 {
		p, err := z.AllocPages(0, gfp.Kernel)
		require.NoError(t, err)
		z.Free(p.Bytes())
		require.False(t, p.InUse(), "freed")
	}
	require.Equal(t, []krules.Kind{krules.SlabError}, rec.Kinds(), "once")
	require.Regexp(t, `^WARNING: CPU: - PID: \d+ at gfp/kmalloc_test\.go:\d+ `, rec.Last().Headline)
	require.Regexp(t, `WARN_ON_ONCE\(order == 0\): free_large_kmalloc: object pointer: 0x[0-9a-f]+\n`, rec.Last().Text)
	st = z.Stats()
	require.Equal(t, before, st.Free+st.PCP, "both pages back")

	p, err := z.AllocPages(0, gfp.Kernel)
	require.NoError(t, err)
	z.Free(p.Bytes())
	z.FreePages(p, 0)
	require.Equal(t, krules.BadPage, rec.Last().Kind)
	require.Contains(t, rec.Last().Text, "page dumped because: page already free (double free)")
}

// kfree of a pointer inside a kmalloc_large block, not at its start, is a
// bad free (free_large_kmalloc's page checks): reported, and the block stays
// allocated for the real free.
func TestLargeKmallocInteriorFreeIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 4<<20)
	big, err := z.Alloc(3*gfp.PageSize, gfp.Kernel)
	require.NoError(t, err)
	z.Free(big[100:])
	require.Equal(t, []krules.Kind{krules.BadPage}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "kfree() of memory kmalloc did not return")
	z.Free(big)
	require.Equal(t, 1, rec.Len(), "the block was still allocated")
}

// Many goroutines allocate pages and objects of random sizes, fill them
// with their own pattern, check it and free them, under -race.
func TestConcurrentAllocation(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 32<<20)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			type obj struct {
				b     []byte
				p     *gfp.Page
				order int
			}
			var held []obj
			for range 3000 {
				if len(held) > 0 && rng.IntN(2) == 0 {
					i := rng.IntN(len(held))
					o := held[i]
					held[i] = held[len(held)-1]
					held = held[:len(held)-1]
					for _, c := range o.b {
						if c != byte(g) {
							panic("corrupted")
						}
					}
					if o.p != nil {
						z.FreePages(o.p, o.order)
					} else {
						z.Free(o.b)
					}
					continue
				}
				if rng.IntN(3) == 0 {
					order := rng.IntN(4)
					p, err := z.AllocPages(order, gfp.Kernel)
					if err != nil {
						panic(err)
					}
					b := p.Bytes()
					for i := range b {
						b[i] = byte(g)
					}
					held = append(held, obj{b, p, order})
				} else {
					b, err := z.Alloc(1+rng.IntN(3000), gfp.Kernel)
					if err != nil {
						panic(err)
					}
					for i := range b {
						b[i] = byte(g)
					}
					held = append(held, obj{b: b})
				}
			}
			for _, o := range held {
				if o.p != nil {
					z.FreePages(o.p, o.order)
				} else {
					z.Free(o.b)
				}
			}
		}()
	}
	wg.Wait()
}

// One GFP_KERNEL kmalloc under a spin lock is one bad call and one
// sleep-in-atomic report, whether the class must grow a slab first (a page
// allocation inside the kmalloc) or has an object cached, on the first call
// and on later ones: the page allocation does not check again what kmalloc
// has checked, as the kernel's __might_resched rate limit keeps it to one.
func TestKmallocUnderSpinLockReportsOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		warm bool // allocate and free one first, outside the lock
	}{
		{"new slab", 64, false},
		{"cached object", 64, true},
		{"large", 3 * gfp.PageSize, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := krulestest.Record(t)
			krulestest.ResetDefault(t)
			z := newZone(t, 4<<20, gfp.WithShards(1), gfp.WithoutKswapd())
			if tc.warm {
				b, err := z.Alloc(tc.size, gfp.Kernel)
				require.NoError(t, err)
				z.Free(b)
			}
			var l lockclass.SpinLock
			l.Init(lockclass.WithName("test_lock"))
			for call := range 2 {
				l.Lock()
				b, err := z.Alloc(tc.size, gfp.Kernel)
				l.Unlock()
				require.NoError(t, err)
				z.Free(b)
				require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds(), "call %d", call)
				rec.Clear()
			}
		})
	}
}

// A size class's slab is the smallest order that holds four objects, so
// kmalloc-8k's slabs are order 3 with four objects (its /proc/slabinfo line:
// objperslab 4, pagesperslab 8), and the zone counts the slab's pages, not
// its slabs (nr_slab_unreclaimable).
func TestKmallocSlabOfTheLargestClassHoldsFourObjects(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 4<<20, gfp.WithShards(1))
	b, err := z.Alloc(gfp.KmallocMaxCacheSize, gfp.Kernel)
	require.NoError(t, err)
	require.Equal(t, int64(8), z.Stats().SlabPages)
	z.Free(b)
	z.Free(b)
	require.Regexp(t, `^BUG kmalloc-8k \(.*\): Object already free$`, rec.Last().Headline)
	require.Contains(t, rec.Last().Text, " objects=4 zone=")
}

// A class keeps one empty slab for reuse and gives the pages of the others
// back (SLUB's min_partial, reduced): of nine kmalloc-8k slabs, the 36
// objects freed leave 20 in the shard's magazine (five slabs) and drain 16,
// which empty four slabs, of which one is kept.
func TestKmallocKeepsOneEmptySlab(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20, gfp.WithShards(1))
	var bs [][]byte
	for range 36 {
		b, err := z.Alloc(gfp.KmallocMaxCacheSize, gfp.Kernel)
		require.NoError(t, err)
		bs = append(bs, b)
	}
	require.Equal(t, int64(9*8), z.Stats().SlabPages)
	for _, b := range bs {
		z.Free(b)
	}
	require.Equal(t, int64(6*8), z.Stats().SlabPages)
}
