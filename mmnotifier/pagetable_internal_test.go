package mmnotifier

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/krulestest"
)

// A page table goes when its last present entry is cleared
// (free_pte_range), so an address space whose pages are all gone holds no
// table, however much it maps.
func TestEmptyPageTablesAreFreed(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	addr, err := mm.Mmap(2*pmdSize, ProtReadWrite)
	require.NoError(t, err)
	for _, a := range []uint64{addr, addr + page, addr + pmdSize} {
		_, err := mm.Fault(a, true)
		require.NoError(t, err)
	}
	require.Len(t, mm.pt.tables, 2)
	require.NoError(t, mm.Discard(addr, page))
	require.Len(t, mm.pt.tables, 2, "the first table still maps a page")
	require.NoError(t, mm.Discard(addr+page, page))
	require.Len(t, mm.pt.tables, 1)
	require.NoError(t, mm.Discard(addr+pmdSize, page))
	require.Empty(t, mm.pt.tables)
}
