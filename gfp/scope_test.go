package gfp_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/internal/task"
)

func TestScopesNestLikeMemallocFlagsSave(t *testing.T) {
	require.Zero(t, gfp.CurrentTaskFlags())
	outer := gfp.NoFSSave()
	require.Equal(t, gfp.PFMemallocNoFS, outer)
	inner := gfp.NoFSSave()
	require.Zero(t, inner, "an inner scope finds the bit set and owns nothing")
	require.Equal(t, gfp.NoFS, gfp.CurrentContext(gfp.Kernel))
	gfp.NoFSRestore(inner)
	require.Equal(t, gfp.NoFS, gfp.CurrentContext(gfp.Kernel), "the inner restore leaves the outer scope")
	gfp.NoFSRestore(outer)
	require.Equal(t, gfp.Kernel, gfp.CurrentContext(gfp.Kernel))
	require.Nil(t, task.Lookup(), "the last scope drops the task record")
}

func TestCurrentContext(t *testing.T) {
	io := gfp.NoIOSave()
	fs := gfp.NoFSSave()
	require.Equal(t, gfp.NoIO, gfp.CurrentContext(gfp.Kernel), "NOIO wins over NOFS")
	gfp.NoFSRestore(fs)
	gfp.NoIORestore(io)

	pin := gfp.PinSave()
	require.Equal(t, gfp.User|gfp.HighMem, gfp.CurrentContext(gfp.HighUserMovable))
	gfp.PinRestore(pin)

	r := gfp.NoReclaimSave()
	require.Equal(t, gfp.Kernel, gfp.CurrentContext(gfp.Kernel), "PF_MEMALLOC is the allocator's business")
	require.Equal(t, gfp.PFMemalloc, gfp.CurrentTaskFlags())
	gfp.NoReclaimRestore(r)
	require.Equal(t, gfp.Atomic, gfp.CurrentContext(gfp.Atomic), "scopes never add bits")
	require.Nil(t, task.Lookup())
}

func TestScopesBelongToTheGoroutine(t *testing.T) {
	s := gfp.NoFSSave()
	defer gfp.NoFSRestore(s)
	done := make(chan gfp.Flags)
	go func() { done <- gfp.CurrentContext(gfp.Kernel) }()
	require.Equal(t, gfp.Kernel, <-done)
}

func TestMemallocSaveRestoreArbitraryMasks(t *testing.T) {
	a := gfp.MemallocSave(gfp.PFMemallocNoFS | gfp.PFMemallocNoIO)
	b := gfp.MemallocSave(gfp.PFMemallocNoIO | gfp.PFMemalloc)
	require.Equal(t, gfp.PFMemalloc, b)
	gfp.MemallocRestore(b)
	require.Equal(t, gfp.PFMemallocNoFS|gfp.PFMemallocNoIO, gfp.CurrentTaskFlags())
	gfp.MemallocRestore(a)
	require.Nil(t, task.Lookup())
	require.Zero(t, gfp.MemallocSave(0))
	require.Nil(t, task.Lookup(), "an empty save leaves no record")
}
