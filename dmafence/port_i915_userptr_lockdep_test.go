//go:build !krules_nolockdep

package dmafence_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
)

// The notifier waiting for the object's fences under the write lock, a
// spinning rwlock: dma_fence_wait_timeout's might_sleep in atomic context.
// The engine is held back until the report, so that the first invalidation
// finds its object's fences pending (dma_resv_wait_timeout waits, and so
// checks, only for unsignalled ones), then lets go so that the wait ends.
func TestI915WaitUnderNotifierLock(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	gate := make(chan struct{})
	go func() {
		defer close(gate)
		for deadline := time.Now().Add(10 * time.Second); rec.Len() == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}()
	runI915(t, i915Bugs{waitUnderNotifierLock: true}, gate)
	<-gate
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	r := rec.Last()
	require.Regexp(t, `^BUG: sleeping function called from invalid context at dmafence/port_i915_userptr_test.go:\d+$`, r.Headline)
	require.Contains(t, r.Text, "in_atomic(): 1, irqs_disabled(): 0, non_block: 0")
	require.Contains(t, r.Text, "(&i915->mm.notifier_lock)")
	t.Log(r.Text)
}
