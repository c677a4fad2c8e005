package gfp

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// __zone_watermark_ok's boundary: the free pages left once the request's
// pages beyond its first are counted out must stay strictly above the
// threshold, so a request that would leave exactly the watermark fails,
// and an order-1 request needs one page more than an order-0 one.
func TestWatermarkOKIsStrictAndCountsTheRequest(t *testing.T) {
	z := quietZone(t)
	for _, af := range []allocFlags{allocWmarkMin, allocWmarkLow, allocWmarkHigh, allocWmarkMin | allocMinReserve | allocNonBlock} {
		m := z.threshold(af)
		require.Positive(t, m)
		require.Zero(t, z.watermarkOK(0, af, m), "free == watermark fails (af %#x)", af)
		require.Equal(t, int64(1), z.watermarkOK(0, af, m+1), "one page of headroom (af %#x)", af)
		require.Zero(t, z.watermarkOK(1, af, m+1), "an order-1 request takes two pages (af %#x)", af)
		require.Equal(t, int64(2), z.watermarkOK(1, af, m+2), "af %#x", af)
	}
}

// calculate_min_free_kbytes clamps sqrt(16·KiB) to [128 KiB, 256 MiB]; the
// top needs a zone of 4 TiB, so it is checked on the function.
func TestDefaultMinFreeKbytesIsClamped(t *testing.T) {
	require.Equal(t, int64(128), defaultMinFreeKbytes(1))
	require.Equal(t, int64(262144), defaultMinFreeKbytes(1<<30), "4 TiB: sqrt(2^32·16) = 262144 exactly")
	require.Equal(t, int64(262144), defaultMinFreeKbytes(1<<32))
	require.Equal(t, int64(8187), defaultMinFreeKbytes(1<<20-1024), "sqrt(16·(4 GiB - 4 MiB)) = 8187.99: int_sqrt rounds down")
}

// quietZone is a 4 MiB zone without kswapd, closed when the test ends, for
// the package's internal tests.
func quietZone(t *testing.T) *Zone {
	z, err := NewZone(4<<20, WithoutKswapd())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, z.Close()) })
	return z
}

// hold takes order-0 pages from z while more says so and z has any, without
// waking kswapd, and returns them in a slice the test may take pages from;
// those still in it are freed when the test ends, before the zone closes.
func hold(t *testing.T, z *Zone, more func() bool) *[]*Page {
	held := new([]*Page)
	t.Cleanup(func() {
		for _, p := range *held {
			z.FreePages(p, 0)
		}
	})
	for more() {
		p, err := z.AllocPages(0, (Kernel&^KswapdReclaim)|NoWarn)
		if err != nil {
			break
		}
		*held = append(*held, p)
	}
	return held
}

// belowHigh holds pages of z until it is below its high watermark for
// order 0.
func belowHigh(t *testing.T, z *Zone) *[]*Page {
	held := hold(t, z, func() bool { return z.balanced(0) })
	require.False(t, z.balanced(0))
	return held
}

// freeingHeld is a shrinker that frees the pages in *held, newest first,
// as many a Scan call as it is asked to scan.
func freeingHeld(z *Zone, held *[]*Page) *Shrinker {
	return &Shrinker{
		Name:  "held",
		Seeks: DefaultSeeks,
		Count: func(*ShrinkControl) uint64 { return uint64(len(*held)) },
		Scan: func(sc *ShrinkControl) uint64 {
			n := min(int(sc.NrToScan), len(*held))
			for _, p := range (*held)[len(*held)-n:] {
				z.FreePages(p, 0)
			}
			*held = (*held)[:len(*held)-n]
			return uint64(n)
		},
	}
}
