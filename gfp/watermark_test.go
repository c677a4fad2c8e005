package gfp_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
)

func TestWatermarksAreComputedAsTheKernelDoes(t *testing.T) {
	// 64 MiB: min_free_kbytes = sqrt(65536·16) = 1024 KiB = 256 pages;
	// delta = max(256/4, 16384·10/10000) = 64.
	z := newZone(t, 64<<20)
	require.Equal(t, gfp.Watermarks{Min: 256, Low: 320, High: 384, Promo: 448}, z.Watermarks())

	// A small zone is clamped to 128 KiB.
	small := newZone(t, 1<<20)
	require.Equal(t, int64(32), small.Watermarks().Min)
	tiny := newZone(t, 512<<10) // sqrt(512·16) = 90 KiB, clamped
	require.Equal(t, int64(32), tiny.Watermarks().Min)

	// The scale factor takes over when it is larger than min/4.
	require.NoError(t, z.SetWatermarkScaleFactor(1000)) // 10%: 1638 pages
	require.Equal(t, gfp.Watermarks{Min: 256, Low: 256 + 1638, High: 256 + 2*1638, Promo: 256 + 3*1638}, z.Watermarks())
	require.Error(t, z.SetWatermarkScaleFactor(3001))
	require.Error(t, z.SetWatermarkScaleFactor(0))
	require.NoError(t, z.SetWatermarkScaleFactor(10))
	require.Error(t, z.SetMinFreeKbytes(-1))

	require.NoError(t, z.SetMinFreeKbytes(4096))
	require.Equal(t, gfp.Watermarks{Min: 1024, Low: 1280, High: 1536, Promo: 1792}, z.Watermarks())
	require.NoError(t, z.SetMinFreeKbytes(0))
	require.Equal(t, int64(256), z.Watermarks().Min, "0 restores the default")
}

// reserveZone has min = 256 pages, one shard and no kswapd, so page counts
// are exact.
func reserveZone(t *testing.T) *gfp.Zone {
	return newZone(t, 16<<20, gfp.WithMinFreeKbytes(1024), gfp.WithShards(1), gfp.WithoutKswapd())
}

// drainTo allocates order-0 pages with flags until one fails and returns
// them.
func drainTo(t *testing.T, z *gfp.Zone, flags gfp.Flags) []*gfp.Page {
	t.Helper()
	var got []*gfp.Page
	for {
		p, err := z.AllocPages(0, flags)
		if err != nil {
			require.ErrorIs(t, err, gfp.ErrNoMemory)
			return got
		}
		got = append(got, p)
		require.Less(t, len(got), z.Pages()+1)
	}
}

// Each kind of caller of __zone_watermark_ok (mm/page_alloc.c: the min
// watermark less the ALLOC_MIN_RESERVE, ALLOC_NON_BLOCK and ALLOC_OOM
// discounts, or none with ALLOC_NO_WATERMARKS) allocates exactly down to
// its threshold: free pages end at that threshold, never below.
func TestReserveThresholds(t *testing.T) {
	const min = 256
	cases := []struct {
		name  string
		flags gfp.Flags
		scope func() gfp.TaskFlags
		floor int64
	}{
		{"GFP_KERNEL stops at min", gfp.Kernel, nil, min},
		{"GFP_NOWAIT stops at min (NON_BLOCK gives no discount)", gfp.NoWait, nil, min},
		{"GFP_KERNEL&~DIRECT_RECLAIM stops at min", gfp.Kernel &^ gfp.DirectReclaim, nil, min},
		{"GFP_ATOMIC goes to 37.5% of min", gfp.Atomic, nil, min * 3 / 8},
		{"blocking __GFP_HIGH goes to 50% of min", gfp.Kernel | gfp.High, nil, min / 2},
		{"GFP_ATOMIC|__GFP_NOMEMALLOC only gets the HIGH half", gfp.Atomic | gfp.NoMemalloc, nil, min / 2},
		{"__GFP_MEMALLOC ignores the watermarks", gfp.Kernel | gfp.Memalloc, nil, 0},
		{"GFP_ATOMIC|__GFP_MEMALLOC ignores the watermarks", gfp.Atomic | gfp.Memalloc, nil, 0},
		{"PF_MEMALLOC ignores the watermarks", gfp.Kernel, gfp.NoReclaimSave, 0},
		{"__GFP_NOMEMALLOC beats __GFP_MEMALLOC", gfp.Kernel | gfp.Memalloc | gfp.NoMemalloc, nil, min},
		{"__GFP_NOMEMALLOC beats PF_MEMALLOC", gfp.Kernel | gfp.NoMemalloc, gfp.NoReclaimSave, min},
		{"GFP_TRANSHUGE_LIGHT stops at min", gfp.TransHugeLight &^ gfp.HighMem, nil, min},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			krulestest.Check(t)
			z := reserveZone(t)
			if c.scope != nil {
				s := c.scope()
				defer gfp.MemallocRestore(s)
			}
			pages := drainTo(t, z, c.flags|gfp.NoWarn)
			st := z.Stats()
			require.Equal(t, c.floor, st.Free, "free pages at the end")
			require.Equal(t, int64(z.Pages()), st.Free+st.PCP+int64(len(pages)))
			if c.floor < min {
				require.NotZero(t, st.ReserveDips, "allocations below min are counted")
			}
			for _, p := range pages {
				z.FreePages(p, 0)
			}
		})
	}
}

// The thresholds stack: GFP_KERNEL stops at min, GFP_ATOMIC goes on to
// 37.5%, PF_MEMALLOC takes the rest.
func TestReservesAreUsedInTurn(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	k := drainTo(t, z, gfp.Kernel|gfp.NoWarn)
	require.Equal(t, int64(256), z.Stats().Free)
	h := drainTo(t, z, gfp.Kernel|gfp.High|gfp.NoWarn)
	require.Equal(t, int64(128), z.Stats().Free)
	require.NotEmpty(t, h)
	a := drainTo(t, z, gfp.Atomic|gfp.NoWarn)
	require.Equal(t, int64(96), z.Stats().Free)
	require.Len(t, a, 32)
	s := gfp.NoReclaimSave()
	m := drainTo(t, z, gfp.Atomic|gfp.NoWarn)
	gfp.NoReclaimRestore(s)
	require.Zero(t, z.Stats().Free)
	for _, ps := range [][]*gfp.Page{k, h, a, m} {
		for _, p := range ps {
			z.FreePages(p, 0)
		}
	}
}

// Higher orders count the pages they take: free - (2^order - 1) must stay
// above the threshold.
func TestReserveThresholdForHigherOrders(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	var got []*gfp.Page
	for {
		p, err := z.AllocPages(3, gfp.Atomic|gfp.NoWarn)
		if err != nil {
			break
		}
		got = append(got, p)
	}
	free := z.Stats().Free
	require.LessOrEqual(t, free-7, int64(96), "one more order-3 block would cross 37.5% of min")
	require.GreaterOrEqual(t, free, int64(96))
	for _, p := range got {
		z.FreePages(p, 3)
	}
}
