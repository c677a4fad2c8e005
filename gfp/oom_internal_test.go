package gfp

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// __alloc_pages_may_oom: while another task holds oom_lock the caller
// calls no OOM notifier and claims progress (after sleeping a tick), so
// that its slow path retries rather than fails.
func TestMayOOMWithTheOOMLockTakenClaimsProgress(t *testing.T) {
	z := quietZone(t)
	calls := 0
	defer z.OnOOM(func(OOMControl) int { calls++; return 0 })()
	z.oom.lock.Lock()
	p, progress := z.mayOOM(0, Kernel, pgAlloc)
	z.oom.lock.Unlock()
	require.Nil(t, p)
	require.True(t, progress)
	require.Zero(t, calls)
}

// __alloc_pages_may_oom's last attempt before the notifiers is at the high
// watermark (it is there to catch a parallel OOM kill, not to dip into the
// reserves): a zone between min and high gives it nothing, and the
// notifiers are called.
func TestMayOOMLastAttemptIsAtTheHighWatermark(t *testing.T) {
	z := quietZone(t)
	held := belowHigh(t, z)
	require.Greater(t, z.nrFree.Load(), z.wmark[wmarkMin].Load()+1, "a min attempt would succeed")
	calls := 0
	defer z.OnOOM(func(OOMControl) int { calls++; return 0 })()
	p, progress := z.mayOOM(0, Kernel, pgAlloc)
	if p != nil {
		*held = append(*held, p)
	}
	require.Nil(t, p)
	require.False(t, progress)
	require.Equal(t, 1, calls)
}
