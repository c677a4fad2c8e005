//go:build !krules_nolockdep

package dmafence_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

func TestSignallingNesting(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	require.False(t, lockclass.IsHeld(dmafence.Map()))
	outer := dmafence.BeginSignalling()
	require.False(t, outer)
	held, known := lockclass.IsHeldType(dmafence.Map(), 1)
	require.True(t, held && known, "held shared (read)")
	inner := dmafence.BeginSignalling()
	require.True(t, inner, "nested sections do nothing")
	dmafence.EndSignalling(inner)
	require.True(t, lockclass.IsHeld(dmafence.Map()))
	dmafence.EndSignalling(outer)
	require.False(t, lockclass.IsHeld(dmafence.Map()))

	nonblock.StartAtomic()
	require.True(t, dmafence.BeginSignalling(), "atomic code cannot wait: nothing to annotate")
	require.False(t, lockclass.IsHeld(dmafence.Map()))
	nonblock.EndAtomic()
}

func TestSignallingWrongCookie(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	outer := dmafence.BeginSignalling()
	inner := dmafence.BeginSignalling()
	require.True(t, inner)
	dmafence.EndSignalling(false) // wrong: ends the outer section
	require.Zero(t, rec.Len())
	dmafence.EndSignalling(outer)
	require.Equal(t, []krules.Kind{krules.BadUnlockBalance}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "dma_fence_map")
	held, _ := lockclass.IsHeldType(dmafence.Map(), -1)
	require.False(t, held)
}

func TestWaitInsideSignalling(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	f := dmafence.New(dmafence.ContextAlloc(1), 1)
	require.NoError(t, f.Signal())
	cookie := dmafence.BeginSignalling()
	f.WaitTimeout(0)
	require.True(t, lockclass.IsHeld(dmafence.Map()), "still in the section")
	dmafence.EndSignalling(cookie)
	require.Equal(t, []krules.Kind{krules.FenceMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "dma_fence_wait inside a dma_fence signalling section")
}

// A lock held while waiting for a fence and taken while signalling one is
// a circular dependency through dma_fence_map.
func TestSignallingTakesWaitersLock(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var l lockclass.Mutex
	l.Init(lockclass.WithName("&vm->notifier_lock"))
	f := dmafence.New(dmafence.ContextAlloc(1), 1)

	l.Lock()
	dmafence.MightWait() // notifier_lock -> dma_fence_map
	l.Unlock()
	require.Zero(t, rec.Len())

	cookie := dmafence.BeginSignalling()
	l.Lock() // dma_fence_map -> notifier_lock
	l.Unlock()
	require.NoError(t, f.Signal())
	dmafence.EndSignalling(cookie)
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	txt := rec.Last().Text
	require.Contains(t, txt, "WARNING: possible circular locking dependency detected")
	require.Contains(t, txt, "dma_fence_map")
	require.Contains(t, txt, "&vm->notifier_lock")
}

// Two signalling sections (read = 1) on different goroutines, and a
// signaller that signals other fences, are fine.
func TestSignallingSharedIsFine(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	f, g := dmafence.New(dmafence.ContextAlloc(1), 1), dmafence.New(dmafence.ContextAlloc(1), 1)
	require.NoError(t, f.AddCallback(func(*dmafence.Fence) { _ = g.Signal() }))
	cookie := dmafence.BeginSignalling()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := dmafence.BeginSignalling()
		dmafence.EndSignalling(c)
	}()
	<-done
	require.NoError(t, f.Signal())
	dmafence.EndSignalling(cookie)
	require.True(t, g.IsSignaled())
}

// Once primed (any Resv), a GFP_KERNEL allocation in a signalling section
// is reported on the first run: dma_fence_map -> fs_reclaim closes
// fs_reclaim -> mmu_notifier_invalidate_range_start -> dma_fence_map.
func TestSignallingAllocates(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	_ = dmafence.NewResv()
	require.Zero(t, rec.Len(), "priming is clean")
	cookie := dmafence.BeginSignalling()
	gfp.MightAlloc(gfp.NoWait)
	require.Zero(t, rec.Len(), "GFP_NOWAIT does not reclaim")
	gfp.MightAlloc(gfp.Kernel)
	dmafence.EndSignalling(cookie)
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	txt := rec.Last().Text
	require.Contains(t, txt, "WARNING: possible circular locking dependency detected")
	require.Contains(t, txt, "dma_fence_map")
	require.Contains(t, txt, "fs_reclaim")
	require.Contains(t, txt, "mmu_notifier_invalidate_range_start")
}
