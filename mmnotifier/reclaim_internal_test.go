package mmnotifier

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
)

// The address space's shrinker goes with it: after Exit the zone no longer
// holds it (it registers again without complaint).
func TestExitUnregistersTheShrinker(t *testing.T) {
	krulestest.Check(t)
	z, err := gfp.NewZone(4<<20, gfp.WithoutKswapd())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, z.Close()) })
	mm := NewMM(WithZone(z))
	s := mm.shrinker
	require.NotNil(t, s)
	mm.Exit()
	require.NoError(t, z.RegisterShrinker(s), "no longer registered")
	z.UnregisterShrinker(s)
}
