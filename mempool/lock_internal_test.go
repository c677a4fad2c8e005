package mempool

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The count word packs the reserve into bits 1-31: a reserve of MaxInt32
// elements, the kernel's largest min_nr, reads back whole beside out.
func TestCountWordPacksTheFullReserve(t *testing.T) {
	c := uint64(maxMinNr)*reserveOne + 3*outOne
	require.Equal(t, maxMinNr, reserveOf(c))
	require.Equal(t, int64(3), outOf(c))
}

// A free that finds nothing out is refused whatever the reserve holds, by
// each of the word's operations that count an element back in once the
// word has changed under them (lockReturning's first swap expects the
// word its caller read, with an element out): once it has spun for the
// lock, and without the lock. The word is left as it was.
func TestCountWordRefusesAFreeWithNothingOut(t *testing.T) {
	const c = 5 * reserveOne // a full reserve, nothing out
	var w countWord
	w.v.Store(c)
	require.False(t, w.lockReturning(c+outOne), "the element seen out came back meanwhile")
	require.False(t, w.lockSlow(true))
	require.False(t, w.returned())
	require.Equal(t, uint64(c), w.load())

	w.v.Store(c + outOne)
	require.True(t, w.returned())
	require.Equal(t, uint64(c), w.load(), "the one element out came back")
}

// A hand-out that wraps out to zero panics even when the reserve is not
// empty: the test is on out alone.
func TestCheckOutCatchesAWrapWithAReserve(t *testing.T) {
	require.Panics(t, func() { checkOut(3 * reserveOne) })
	require.NotPanics(t, func() { checkOut(outOne + 3*reserveOne) })
}
