package gfp_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
)

// newZone creates a zone for a test and closes it when the test ends,
// requiring that every page came back.
func newZone(t testing.TB, size int, opts ...gfp.ZoneOption) *gfp.Zone {
	t.Helper()
	z, err := gfp.NewZone(size, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, z.Close()) })
	return z
}

// accounted returns free + cached pages: what the zone holds.
func accounted(z *gfp.Zone) int64 {
	st := z.Stats()
	return st.Free + st.PCP
}
