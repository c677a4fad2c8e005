//go:build !krules_nolockdep

package dmafence_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// A cleanup that backs off without unlocking: the slow lock of the
// contended object is taken while the ticket still holds y, which
// ww_mutex_lock_acquired warns about ("You called ww_mutex_lock after
// receiving -EDEADLK, but 'forgot' to unlock everything else first?"): an
// older ticket wanting y would wait for this one, sleeping on x, forever.
// The older exec lets go of x before the retry, so that the slow lock does
// not wait (and die again) and the test cannot hang; the pass then finds y
// still held: -EALREADY.
func TestDRMExecBackoffWithoutUnlock(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	c := contend(t, drmExecBugs{keepLocksOnContention: true}, 0, true)
	require.True(t, c.yHeldRetry)
	require.ErrorIs(t, c.err, lockclass.ErrAlready)
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "DEBUG_LOCKS_WARN_ON(ww_ctx->acquired > 0)")
}

// Locking after the loop, whose last cleanup said ww_acquire_done:
// ww_mutex_lock_acquired's "Not quite done after calling ww_acquire_done ?"
func TestDRMExecLockAfterDone(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	a, b := newGEMObject("a"), newGEMObject("b")
	e := newDRMExec(0)
	lockAll(t, e, []*gemObject{a})
	require.NoError(t, e.lockObj(b))
	e.fini()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "DEBUG_LOCKS_WARN_ON(ww_ctx->done_acquire)")
}

// A second drm_exec opened inside the first's loop on the same task, as an
// eviction with its own ticket would: two tickets of reservation_ww_class
// can deadlock each other, and ww_acquire_init's mutex_acquire of the
// second is lockdep's recursive locking of reservation_ww_class_acquire
// (found before any circular dependency: check_deadlock runs first).
func TestDRMExecNestedTicket(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	a, b := newGEMObject("a"), newGEMObject("b")
	outer := newDRMExec(0)
	for outer.cleanup() {
		err := outer.prepareObj(a, 1)
		if outer.isContended() {
			continue
		}
		require.NoError(t, err)
		inner := newDRMExec(0)
		lockAll(t, inner, []*gemObject{b})
		inner.fini()
	}
	outer.fini()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "WARNING: possible recursive locking detected", r.Headline)
	require.Contains(t, r.Text, "reservation_ww_class_acquire")
	t.Log(r.Text)
}

// drm_exec_lock_obj where drm_exec_prepare_obj was needed: the fence is
// added with no slot reserved. The kernel's dma_resv_add_fence stops there
// (BUG_ON(fobj->num_fences >= fobj->max_fences), or a NULL list for a
// fresh object); krules reports the BUG_ON's condition and adds the fence.
func TestDRMExecAddFenceWithoutPrepare(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	a := newGEMObject("a")
	e := newDRMExec(0)
	for e.cleanup() {
		err := e.lockObj(a)
		if e.isContended() {
			continue
		}
		require.NoError(t, err)
	}
	f := dmafence.New(dmafence.ContextAlloc(1), 1)
	a.resv.AddFence(f, dmafence.UsageWrite)
	e.fini()
	require.NoError(t, f.Signal())
	require.Equal(t, []krules.Kind{krules.FenceMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "BUG_ON(fobj->num_fences >= fobj->max_fences): dma_resv_add_fence: no room reserved")
}
