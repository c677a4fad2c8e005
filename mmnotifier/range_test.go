package mmnotifier_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/mmnotifier"
)

// The events are the kernel's enum mmu_notifier_event: its values, in its
// order, under its names; an event past the last prints its number.
func TestEventsAreTheKernels(t *testing.T) {
	names := []string{"MMU_NOTIFY_UNMAP", "MMU_NOTIFY_CLEAR", "MMU_NOTIFY_PROTECTION_VMA",
		"MMU_NOTIFY_PROTECTION_PAGE", "MMU_NOTIFY_SOFT_DIRTY", "MMU_NOTIFY_RELEASE",
		"MMU_NOTIFY_MIGRATE", "MMU_NOTIFY_EXCLUSIVE"}
	for i, name := range names {
		require.Equal(t, name, mmnotifier.Event(i).String())
	}
	require.Zero(t, mmnotifier.EventUnmap)
	require.EqualValues(t, len(names)-1, mmnotifier.EventExclusive)
	require.Equal(t, "MMU_NOTIFY_8", mmnotifier.Event(len(names)).String())
}
