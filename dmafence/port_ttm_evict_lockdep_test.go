//go:build !krules_nolockdep

package dmafence_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
)

// After drm_exec's loop the ticket is done (drm_exec_cleanup called
// ww_acquire_done), and a ticketlock that succeeds is a lock after it:
// ww_mutex_lock_acquired's DEBUG_LOCKS_WARN_ON(ww_ctx->done_acquire).
// Read from v6.12's sources, amdgpu_cs_parser_bos validates its BOs after
// the loop, and ttm_bo_alloc_resource hands the loop's ticket
// (dma_resv_locking_ctx) to ttm_lru_walk_ticketlock, so a kernel with
// CONFIG_DEBUG_MUTEXES would print the same once a busy BO had to be
// ticketlocked.
func TestTTMTicketlockAfterTheLoop(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	ticketlockAfterBusyHolder(t, true)
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "DEBUG_LOCKS_WARN_ON(ww_ctx->done_acquire)")
	t.Log(rec.Last().Text)
}
