//go:build !krules_nolockdep

package lockclass

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
)

// The two "locking mismatches" cases of lib/locking-selftest.c that poke a
// field the API cannot reach.

// record runs fn on a fresh default validator and returns its reports
// (krulestest imports this package, so these tests cannot use it).
func record(t *testing.T, fn func()) []*krules.Report {
	t.Cleanup(Default().ResetWithRestore())
	return krules.Collect(fn)
}

func kinds(reps []*krules.Report) []krules.Kind {
	var ks []krules.Kind
	for _, r := range reps {
		ks = append(ks, r.Kind)
	}
	return ks
}

func TestWWObjectLockUnbalanced(t *testing.T) {
	class := NewWDClass("ww_lockdep")
	var o WWMutex
	o.Init(class)
	reps := record(t, func() {
		var ctx WWAcquireCtx
		ctx.Init(class)
		require.NoError(t, o.Lock(&ctx))
		ctx.acquired = 0 // t.acquired = 0
		o.Unlock()
		ctx.Fini()
	})
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, kinds(reps))
	require.True(t, strings.Contains(reps[0].Text, "DEBUG_LOCKS_WARN_ON(!lock->ctx->acquired)"))
	require.False(t, o.IsLocked())
}

func TestWWObjectLockStaleContext(t *testing.T) {
	class := NewWDClass("ww_lockdep")
	var o WWMutex
	o.Init(class)
	reps := record(t, func() {
		var ctx, t2 WWAcquireCtx
		ctx.Init(class)
		o.state.Store(wwWord(&t2, wwStale)) // o.ctx = &t2
		require.NoError(t, o.Lock(&ctx))
		o.Unlock()
		ctx.Fini()
	})
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, kinds(reps))
	require.Contains(t, reps[0].Text, "DEBUG_LOCKS_WARN_ON(ww->ctx)")
}
