package gfp_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/nonblock"
)

// A blocking allocation in an atomic section is "sleeping function called
// from invalid context", whether or not it would have slept; GFP_ATOMIC
// and GFP_NOWAIT are what atomic sections are for.
func TestMightAllocChecksSleeping(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 1<<20)
	nonblock.StartAtomic()
	p, err := z.AllocPages(0, gfp.Atomic)
	require.NoError(t, err)
	z.FreePages(p, 0)
	b, err := z.Alloc(32, gfp.NoWait)
	require.NoError(t, err)
	z.Free(b)
	require.Zero(t, rec.Len())

	site := here()
	p, err = z.AllocPages(0, gfp.Kernel)
	nonblock.EndAtomic()
	require.NoError(t, err)
	z.FreePages(p, 0)
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	require.Equal(t, "BUG: sleeping function called from invalid context at "+site, rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "gfp.(*Zone).AllocPages+")

	nonblock.Start()
	gfp.MightAlloc(gfp.NoIO)
	nonblock.End()
	require.Len(t, rec.Kinds(), 2, "GFP_NOIO may sleep too")
	require.Nil(t, task.Lookup())
}

// PF_MEMALLOC does not make a blocking allocation non-blocking: the check
// is on the flags.
func TestMightAllocUnderNoReclaimStillChecksSleeping(t *testing.T) {
	rec := krulestest.Record(t)
	s := gfp.NoReclaimSave()
	nonblock.Start()
	gfp.MightAlloc(gfp.Kernel)
	nonblock.End()
	gfp.NoReclaimRestore(s)
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
}
