package gfp_test

import (
	"path/filepath"
	"runtime"
	"strconv"
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

// here returns "gfp/FILE.go:LINE" for the line after the call.
func here() string {
	_, file, line, _ := runtime.Caller(1)
	return "gfp/" + filepath.Base(file) + ":" + strconv.Itoa(line+1)
}
