//go:build !krules_nolockdep

package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The fence strategy is clean because its scheduler signals without
// allocating. One that allocates a completion record with GFP_KERNEL in its
// signalling section is reported in this workload, as in the kernel, on
// the first job and with no memory pressure: a circular dependency through
// dma_fence_map and fs_reclaim, after which lockdep turns itself off.
func TestFenceStrategyCatchesAllocationInSignalling(t *testing.T) {
	buggy := fenceStrategy
	buggy.probe = func(d *device, _ int) (buffers, error) { return newFenceBuffers(d, true), nil }
	cfg := config{workers: 4, zoneMiB: 16, seed: 1, quick: true}.workload()
	res, err := runStrategy(cfg, buggy, conditions[0], 0)
	require.NoError(t, err)
	require.Equal(t, "plenty", res.ConditionKey)
	require.Positive(t, res.Modes[blockable].FenceWaits, "the callbacks waited for jobs")
	require.Equal(t, map[string]int{"circular-dependency": 1}, res.Reports.ByKind)
	require.False(t, res.LockdepOnAfter)
}
