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

// quietZone is a 4 MiB zone without kswapd, closed when the test ends, for
// the package's internal tests.
func quietZone(t *testing.T) *Zone {
	z, err := NewZone(4<<20, WithoutKswapd())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, z.Close()) })
	return z
}
