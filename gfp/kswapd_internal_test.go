package gfp

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// wakeup_kswapd raises the order kswapd is to balance for and never lowers
// it: a wake-up for order 0 after one for order 3 leaves 3 pending.
func TestWakeupKswapdKeepsTheHighestOrder(t *testing.T) {
	z := quietZone(t)
	z.wakeupKswapd(3)
	z.wakeupKswapd(0)
	require.EqualValues(t, 3, z.kswapd.order.Load())
	z.wakeupKswapd(5)
	require.EqualValues(t, 5, z.kswapd.order.Load())
}

// A kswapd run that reclaims something clears kswapd_failures, so a node
// that was given up on (MaxReclaimRetries failed runs) is balanced again.
func TestKswapdRunThatReclaimsClearsItsFailures(t *testing.T) {
	z := quietZone(t)
	var held []*Page
	for z.balanced(0) {
		p, err := z.AllocPages(0, Kernel|NoWarn)
		require.NoError(t, err)
		held = append(held, p)
	}
	s := &Shrinker{
		Name:  "held",
		Seeks: DefaultSeeks,
		Count: func(*ShrinkControl) uint64 { return uint64(len(held)) },
		Scan: func(sc *ShrinkControl) uint64 {
			n := min(int(sc.NrToScan), len(held))
			for _, p := range held[len(held)-n:] {
				z.FreePages(p, 0)
			}
			held = held[:len(held)-n]
			return uint64(n)
		},
	}
	require.NoError(t, z.RegisterShrinker(s))
	defer z.UnregisterShrinker(s)
	z.kswapd.failures.Store(MaxReclaimRetries)
	z.balancePgdat(make(chan struct{}))
	require.Zero(t, z.kswapd.failures.Load())
	for _, p := range held {
		z.FreePages(p, 0)
	}
}
