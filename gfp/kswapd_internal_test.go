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
	s := freeingHeld(z, belowHigh(t, z))
	require.NoError(t, z.RegisterShrinker(s))
	defer z.UnregisterShrinker(s)
	z.kswapd.failures.Store(MaxReclaimRetries)
	z.balancePgdat(make(chan struct{}))
	require.Zero(t, z.kswapd.failures.Load())
}

// balance_pgdat's priority loop runs while sc.priority >= 1: kswapd tries
// DEF_PRIORITY down to 1, one round each when nothing comes back, and
// leaves priority 0 (the whole of every cache) to direct reclaim.
func TestBalancePgdatStopsAtPriorityOne(t *testing.T) {
	z := quietZone(t)
	belowHigh(t, z)
	rounds := 0
	s := &Shrinker{
		Name:  "nothing",
		Seeks: DefaultSeeks,
		Count: func(*ShrinkControl) uint64 { rounds++; return 1 << 20 },
		Scan:  func(*ShrinkControl) uint64 { return 0 },
	}
	require.NoError(t, z.RegisterShrinker(s))
	defer z.UnregisterShrinker(s)
	z.balancePgdat(make(chan struct{}))
	require.Equal(t, DefPriority, rounds)
	require.EqualValues(t, 1, z.kswapd.failures.Load())
}

// A direct reclaim that frees something clears kswapd_failures too
// (shrink_node does it for every reclaimer), so kswapd is woken again on a
// node it had given up on.
func TestDirectReclaimProgressClearsKswapdFailures(t *testing.T) {
	z := quietZone(t)
	s := freeingHeld(z, hold(t, z, func() bool { return true }))
	require.NoError(t, z.RegisterShrinker(s))
	defer z.UnregisterShrinker(s)
	z.kswapd.failures.Store(MaxReclaimRetries)
	p, err := z.AllocPages(0, Kernel)
	require.NoError(t, err)
	z.FreePages(p, 0)
	require.Zero(t, z.kswapd.failures.Load())
}

// wakeup_kswapd leaves a hopeless node alone: once kswapd_failures has
// reached MAX_RECLAIM_RETRIES no wake-up is delivered; one failure fewer
// and kswapd is woken.
func TestWakeupKswapdSkipsAHopelessNode(t *testing.T) {
	z, err := NewZone(4 << 20)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, z.Close()) })
	belowHigh(t, z)
	z.kswapd.failures.Store(MaxReclaimRetries)
	z.wakeupKswapd(0)
	require.False(t, z.KswapdRunning())
	require.Zero(t, z.Stats().KswapdWakeups)
	z.kswapd.failures.Store(MaxReclaimRetries - 1)
	z.wakeupKswapd(0)
	require.True(t, z.KswapdRunning())
	require.EqualValues(t, 1, z.Stats().KswapdWakeups)
}

// balance_pgdat stays at a priority while it makes progress and lowers it
// only after a round that reclaimed nothing: a shrinker that gives back a
// page a Scan call is asked at DEF_PRIORITY (512 objects of 2^20, four
// batches) every round until the zone is balanced.
func TestBalancePgdatKeepsThePriorityWhileItMakesProgress(t *testing.T) {
	z := quietZone(t)
	past := 0 // pages taken below the high watermark: 20, so that it takes a few rounds
	held := hold(t, z, func() bool {
		if !z.balanced(0) {
			past++
		}
		return past <= 20
	})
	rounds, scans := 0, 0
	s := &Shrinker{
		Name:  "slow",
		Seeks: DefaultSeeks,
		Count: func(*ShrinkControl) uint64 { rounds++; return 1 << 20 },
		Scan: func(*ShrinkControl) uint64 {
			scans++
			z.FreePages((*held)[len(*held)-1], 0)
			*held = (*held)[:len(*held)-1]
			return 1
		},
	}
	require.NoError(t, z.RegisterShrinker(s))
	defer z.UnregisterShrinker(s)
	z.balancePgdat(make(chan struct{}))
	require.Greater(t, rounds, 1)
	require.Equal(t, 4*rounds, scans, "every round at DEF_PRIORITY")
}

// A kswapd run that finds the node balanced (balance_pgdat's "goto out")
// is not a failure, even though it reclaimed nothing.
func TestBalancePgdatOfABalancedZoneIsNoFailure(t *testing.T) {
	z := quietZone(t)
	require.True(t, z.balanced(0))
	z.balancePgdat(make(chan struct{}))
	require.Zero(t, z.kswapd.failures.Load())
	require.EqualValues(t, 1, z.Stats().PageOutRun)
}

// kswapd takes the pending kswapd_order and resets it to 0 for the next
// wake-up: a run for order 3 does not leave order 3 pending.
func TestKswapdRunConsumesThePendingOrder(t *testing.T) {
	z := quietZone(t)
	z.kswapd.order.Store(3)
	z.balancePgdat(make(chan struct{}))
	require.Zero(t, z.kswapd.order.Load())
}

// /proc/zoneinfo's node_unreclaimable is pgdat->kswapd_failures >=
// MAX_RECLAIM_RETRIES: set from the sixteenth failed run, not the
// seventeenth.
func TestNodeUnreclaimableFromMaxReclaimRetriesFailures(t *testing.T) {
	z := quietZone(t)
	z.kswapd.failures.Store(MaxReclaimRetries - 1)
	require.Contains(t, z.ZoneInfo(), "node_unreclaimable:  0\n")
	z.kswapd.failures.Store(MaxReclaimRetries)
	require.Contains(t, z.ZoneInfo(), "node_unreclaimable:  1\n")
}
