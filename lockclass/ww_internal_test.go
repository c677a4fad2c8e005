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

func TestWWObjectLockUnbalanced(t *testing.T) {
	ResetDefault(t)
	rec := krules.Record(t)
	class := NewWDClass("ww_lockdep")
	var o WWMutex
	o.Init(class)
	var ctx WWAcquireCtx
	ctx.Init(class)
	require.NoError(t, o.Lock(&ctx))
	ctx.acquired = 0 // t.acquired = 0
	o.Unlock()
	ctx.Fini()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.True(t, strings.Contains(rec.Last().Text, "DEBUG_LOCKS_WARN_ON(!lock->ctx->acquired)"))
	require.False(t, o.IsLocked())
}

func TestWWObjectLockStaleContext(t *testing.T) {
	ResetDefault(t)
	rec := krules.Record(t)
	class := NewWDClass("ww_lockdep")
	var o WWMutex
	o.Init(class)
	var ctx, t2 WWAcquireCtx
	ctx.Init(class)
	o.ctx.Store(&t2) // o.ctx = &t2
	require.NoError(t, o.Lock(&ctx))
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "DEBUG_LOCKS_WARN_ON(ww->ctx)")
	o.Unlock()
	ctx.Fini()
	require.Len(t, rec.Kinds(), 1)
}
