//go:build !krules_nolockdep

package lockclass_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/lockclass"
)

var primeA, primeB lockclass.PrimeKey

// Two PrimeKeys are two primings: distinct zero-size variables may share
// an address, so a PrimeKey must not be zero-size (dma_resv_lockdep was
// skipped because MightAlloc's priming had run).
func TestPrimeKeysAreDistinct(t *testing.T) {
	require.NotSame(t, &primeA, &primeB)
	v := lockclass.NewValidator()
	runs := 0
	v.PrimeOnce(&primeA, func() { runs++ })
	v.PrimeOnce(&primeB, func() { runs++ })
	require.Equal(t, 2, runs)
}
