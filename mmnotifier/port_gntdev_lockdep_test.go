//go:build !krules_nolockdep

package mmnotifier_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
)

// Before v4.19 gntdev's list notifier took priv->lock with mutex_lock in
// every range; the OOM reaper, which then started to reap processes with
// notifiers, calls it in a non-blockable range, inside a non-block
// section: mutex_lock's might_sleep is the BUG, with non_block: 1. The
// unmap goes ahead, so the reaper reaps. ("mm, oom: distinguish blockable
// mode for mmu notifiers" added the trylock and -EAGAIN.) Compiled out,
// a Mutex is a plain lock without might_sleep, hence the build tag.
func TestGntdevLocksInNonblockableRange(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	krulestest.CaptureLog(t)
	_, reap := runGntdev(t, true, gntdevBugs{lockNonblock: true})
	require.True(t, reap.Reaped)
	require.NotEmpty(t, rec.Kinds())
	for _, r := range rec.Reports() {
		require.Equal(t, krules.SleepInAtomic, r.Kind)
		require.Contains(t, r.Headline, "BUG: sleeping function called from invalid context at mmnotifier/port_gntdev_test.go:")
		require.Contains(t, r.Text, "in_atomic(): 0, irqs_disabled(): 0, non_block: 1, pid: ")
		require.Contains(t, r.Text, "gntdevMN).InvalidateRangeStart+")
	}
	t.Log(rec.Reports()[0].Text)
}
