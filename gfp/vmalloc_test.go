package gfp_test

import (
	"math"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/nonblock"
)

// failHighOrder makes every block above order 0 fail, whatever the flags,
// so only memory built from single pages can be had.
func failHighOrder(z *gfp.Zone) {
	a := quietAttr(100, 1)
	a.IgnoreGFPWait = false
	z.InjectPageAllocFaults(a)
}

func TestVmallocIsContiguousOverScatteredPages(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	if kind, _ := z.Backing(); kind != "memfd" {
		t.Skipf("the arena is %q here, not a memfd: no second mapping", kind)
	}
	free := accounted(z)
	failHighOrder(z)
	const size = 5*gfp.PageSize + 100
	b, err := z.Vmalloc(size, gfp.Kernel|gfp.Zero)
	require.NoError(t, err)
	require.Len(t, b, size)
	require.Equal(t, free-6, accounted(z), "six order-0 pages taken from the zone")
	require.Nil(t, z.PageOf(b), "the area is a second mapping, outside the arena")
	require.True(t, z.IsVmalloc(b))
	require.True(t, z.IsVmalloc(b[3*gfp.PageSize:]), "is_vmalloc_addr of an address inside")
	for i := range b {
		require.Zero(t, b[i])
		b[i] = byte(i)
	}
	for i := range b {
		require.Equal(t, byte(i), b[i])
	}
	z.Vfree(b)
	require.Equal(t, free, accounted(z), "every page came back")
	require.False(t, z.IsVmalloc(b))
}

func TestVmallocSharesThePagesWithTheArena(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 1<<20)
	if kind, _ := z.Backing(); kind != "memfd" {
		t.Skipf("the arena is %q here", kind)
	}
	b, err := z.Vmalloc(2*gfp.PageSize, gfp.Kernel)
	require.NoError(t, err)
	b[0] = 0x5a
	seen := 0
	for pfn := z.StartPFN(); pfn < z.StartPFN()+uint64(z.Stats().Managed); pfn++ {
		if p := z.PageByPFN(pfn); p.InUse() && p.Bytes()[0] == 0x5a {
			seen++
		}
	}
	require.Equal(t, 1, seen, "the first page of the area is a zone page, seen through both mappings")
	z.Vfree(b)
}

func TestKvmallocTakesTheSlabWhenItCan(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	b, err := z.Kvmalloc(200, gfp.Kernel)
	require.NoError(t, err)
	require.NotNil(t, z.PageOf(b), "small: from kmalloc, inside the arena")
	require.False(t, z.IsVmalloc(b))
	z.Kvfree(b)
	free := accounted(z)
	c, err := z.Kvmalloc(3*gfp.PageSize, gfp.Kernel)
	require.NoError(t, err)
	require.NotNil(t, z.PageOf(c), "a high-order block is there: kmalloc_large")
	require.False(t, z.IsVmalloc(c))
	require.Equal(t, free-4, accounted(z), "one order-2 block")
	z.Kvfree(c)
	require.Equal(t, free, accounted(z))
}

func TestKvmallocFallsBackToVmallocOnlyWhenItMayBlock(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 4<<20)
	free := accounted(z)
	failHighOrder(z)

	b, err := z.Kvmalloc(4*gfp.PageSize, gfp.Kernel)
	require.NoError(t, err, "GFP_KERNEL: the vmalloc fallback")
	require.True(t, z.IsVmalloc(b))
	require.Equal(t, free-4, accounted(z))
	z.Kvfree(b)
	require.Equal(t, free, accounted(z))

	for _, f := range []gfp.Flags{gfp.Atomic, gfp.NoWait} {
		_, err = z.Kvmalloc(4*gfp.PageSize, f)
		require.ErrorIs(t, err, gfp.ErrNoMemory, "%v: no vmalloc for a caller that cannot block", f)
	}
	b, err = z.Kvmalloc(4*gfp.PageSize, gfp.Kernel|gfp.RetryMayFail)
	require.NoError(t, err)
	require.Zero(t, rec.Len(), "the slab attempt above a page is NOWARN: %v", rec.Kinds())
	require.Equal(t, free-4, accounted(z))
	z.Kvfree(b)
	require.Equal(t, int64(0), z.Stats().SlabFaultsInjected)
}

func TestKvmallocRefusesMoreThanIntMax(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 1<<20)
	_, err := z.Kvmalloc(math.MaxInt32+1, gfp.Kernel|gfp.NoWarn)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Zero(t, rec.Len(), "NOWARN: no warning, and the once is not used up")
	_, err = z.Kvmalloc(math.MaxInt32+1, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, []krules.Kind{krules.GFPMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "more than INT_MAX")
	_, err = z.Kvmalloc(math.MaxInt32+1, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, 1, rec.Len(), "WARN_ON_ONCE")
}

func TestVmallocReportsLikeTheKernel(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 1<<20)
	_, err := z.Vmalloc(0, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	_, err = z.Vmalloc(0, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	_, err = z.Vmalloc(2<<20, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, []krules.Kind{krules.GFPMisuse, krules.AllocFailure}, rec.Kinds(), "size 0 is a WARN_ON_ONCE, not warn_alloc")
	require.Contains(t, rec.Reports()[0].Text, "WARN_ON_ONCE(!size)")
	require.Contains(t, rec.Last().Headline, ": vmalloc error: size 2097152, exceeds total pages, mode:0xcc0(GFP_KERNEL)")

	// Pages run out half way: those taken come back.
	free := accounted(z)
	rec.Clear()
	a := quietAttr(100, 1)
	a.IgnoreGFPWait, a.IgnoreGFPHighmem, a.MinOrder, a.Space = false, false, 0, 3 // pages
	z.InjectPageAllocFaults(a)
	_, err = z.Vmalloc(8*gfp.PageSize, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, []krules.Kind{krules.AllocFailure}, rec.Kinds())
	require.Contains(t, rec.Last().Headline, "vmalloc error: size 8192, failed to allocate pages, mode:0xcc2(GFP_KERNEL|__GFP_HIGHMEM)", "space 3 lets two pages through (should_fail)")
	require.Equal(t, free, accounted(z))
	z.InjectPageAllocFaults(nil)

	z.Vfree(make([]byte, 8))
	require.Equal(t, krules.SlabError, rec.Last().Kind)
	require.Contains(t, rec.Last().Text, "Trying to vfree() nonexistent vm area")
	b, err := z.Vmalloc(2*gfp.PageSize, gfp.Kernel)
	require.NoError(t, err)
	z.Vfree(b[gfp.PageSize:])
	require.Contains(t, rec.Last().Text, "Trying to vfree() nonexistent vm area", "not the start of the area")
	z.Vfree(b)
	require.Equal(t, free, accounted(z))
}

func TestVmallocMaySleep(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 1<<20)
	nonblock.StartAtomic()
	b, err := z.Vmalloc(gfp.PageSize, gfp.Atomic)
	nonblock.EndAtomic()
	require.NoError(t, err)
	require.NotEmpty(t, rec.Kinds())
	require.Equal(t, krules.SleepInAtomic, rec.Reports()[0].Kind)
	require.Contains(t, rec.Reports()[0].Headline, "BUG: sleeping function called from invalid context at gfp/vmalloc_test.go:")
	z.Vfree(b)

	rec.Clear()
	nonblock.StartAtomic()
	_, err = z.Vmalloc(2<<20, gfp.Atomic)
	nonblock.EndAtomic()
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, []krules.Kind{krules.AllocFailure}, rec.Kinds(), "the size is refused before alloc_vmap_area's might_sleep")
}

func TestVmallocOnAHeapArenaTakesOneBlock(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 1<<20, gfp.WithPortableArena())
	free := accounted(z)
	b, err := z.Kvmalloc(3*gfp.PageSize, gfp.Kernel|gfp.Zero)
	require.NoError(t, err)
	require.Equal(t, free-4, accounted(z), "kmalloc_large's order-2 block")
	z.Kvfree(b)
	b, err = z.Vmalloc(3*gfp.PageSize, gfp.Kernel)
	require.NoError(t, err)
	require.True(t, z.IsVmalloc(b))
	require.NotNil(t, z.PageOf(b), "inside the arena: no second mapping here")
	require.Equal(t, free-4, accounted(z))
	z.Kvfree(b)
	require.Equal(t, free, accounted(z))
	b, err = z.Vmalloc(4*gfp.PageSize, gfp.Kernel)
	require.NoError(t, err)
	require.Equal(t, free-4, accounted(z), "four pages fill an order-2 block: no order more")
	z.Vfree(b)
	require.Equal(t, free, accounted(z))
	runtime.KeepAlive(b)
}

// kvmalloc's slab attempt (kmalloc_gfp_adjust) above a page adds
// __GFP_NOWARN, and __GFP_NORETRY unless the caller asked for
// __GFP_RETRY_MAYFAIL, and drops __GFP_NOFAIL, which the vmalloc fallback
// honours; up to a page the caller's flags are used as they are. The
// shrinker sees the flags of the first attempt.
func TestKvmallocSlabAttemptFlags(t *testing.T) {
	for _, c := range []struct {
		size        int
		flags, slab gfp.Flags
	}{
		{2 * gfp.PageSize, gfp.Kernel, gfp.Kernel | gfp.NoRetry | gfp.NoWarn},
		{2 * gfp.PageSize, gfp.Kernel | gfp.RetryMayFail, gfp.Kernel | gfp.RetryMayFail | gfp.NoWarn},
		{2 * gfp.PageSize, gfp.Kernel | gfp.NoFail, gfp.Kernel | gfp.NoRetry | gfp.NoWarn},
		{gfp.PageSize, gfp.Kernel, gfp.Kernel},
	} {
		t.Run(c.flags.String(), func(t *testing.T) {
			rec := krulestest.Record(t)
			z := reserveZone(t)
			pressure(t, z)
			var first atomic.Uint32
			r := newRecorder(1<<20, gfp.DefaultSeeks, 0, func(sc *gfp.ShrinkControl) uint64 {
				first.CompareAndSwap(0, uint32(sc.GFP))
				return gfp.ShrinkStop
			})
			require.NoError(t, z.RegisterShrinker(&r.Shrinker))
			defer z.UnregisterShrinker(&r.Shrinker)
			b, err := z.Kvmalloc(c.size, c.flags)
			if err == nil {
				z.Kvfree(b)
			}
			require.Equal(t, c.slab|gfp.Comp, gfp.Flags(first.Load()), "(the slab's pages are compound)")
			if c.size == gfp.PageSize {
				require.Equal(t, krules.AllocFailure, rec.Reports()[0].Kind, "no NOWARN up to a page")
			}
		})
	}
}

// The vmalloc size check (the request in pages against the zone's pages)
// refuses one byte more than the zone holds before any page is taken.
func TestVmallocSizeLimitCountsWholePages(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 1<<20)
	_, err := z.Vmalloc((z.Pages()+1)*gfp.PageSize, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, []krules.Kind{krules.AllocFailure}, rec.Kinds())
	require.Contains(t, rec.Last().Headline, "vmalloc error: size 1052672, exceeds total pages")

	// One byte more than the zone is not more whole pages than it has:
	// the size check lets it through and the pages run out.
	rec.Clear()
	_, err = z.Vmalloc(z.Pages()*gfp.PageSize+1, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, []krules.Kind{krules.AllocFailure}, rec.Kinds())
	require.Contains(t, rec.Last().Headline, "failed to allocate pages, mode:0xcc2(GFP_KERNEL|__GFP_HIGHMEM)")
}

func TestVmallocPagesAreHighmemToFaultInjection(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 1<<20)
	a := quietAttr(100, 1)
	a.IgnoreGFPWait, a.MinOrder = false, 0 // ignore-gfp-highmem keeps its default
	z.InjectPageAllocFaults(a)
	b, err := z.Vmalloc(4*gfp.PageSize, gfp.Kernel)
	require.NoError(t, err, "__vmalloc_area_node asks for the pages with __GFP_HIGHMEM")
	z.Vfree(b)
	_, err = z.AllocPages(0, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrNoMemory, "the same attr fails a page asked without it")
	require.Equal(t, int64(1), z.Stats().FaultsInjected)
	require.Empty(t, rec.Kinds())
}

func TestVmallocReportsTheCallersFlagsUnderAScope(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 1<<20)
	saved := gfp.NoFSSave()
	_, err := z.Vmalloc(2<<20, gfp.Kernel)
	gfp.NoFSRestore(saved)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, []krules.Kind{krules.AllocFailure}, rec.Kinds())
	require.Contains(t, rec.Last().Headline, "exceeds total pages, mode:0xcc0(GFP_KERNEL)", "warn_alloc gets vmalloc's gfp_mask, which no scope has narrowed")
}
