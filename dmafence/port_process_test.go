package dmafence_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/mmnotifier"
)

// churnUserptr is what the ports' application does to a userptr range
// while the GPU uses it: mprotect it read-only and back, then discard its
// first page (madvise(MADV_DONTNEED)), three invalidations of the range
// the driver mirrors.
func churnUserptr(t *testing.T, mm *mmnotifier.MM, start, size uint64) {
	require.NoError(t, mm.Protect(start, size, mmnotifier.ProtRead))
	require.NoError(t, mm.Protect(start, size, mmnotifier.ProtReadWrite))
	require.NoError(t, mm.Discard(start, gfp.PageSize))
}
