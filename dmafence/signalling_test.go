//go:build !krules_nolockdep

package dmafence_test

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
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
	shared, _ := lockclass.IsHeldType(dmafence.Map(), 1)
	require.True(t, shared, "__dma_fence_might_wait takes the map back shared (read = 1)")
	dmafence.EndSignalling(cookie)
	require.Equal(t, []krules.Kind{krules.FenceMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "dma_fence_wait inside a dma_fence signalling section")
}

// dma_fence_wait, like dma_fence_wait_timeout, runs __dma_fence_might_wait
// before looking at the fence: waiting for a fence already signalled inside
// a signalling section is reported.
func TestWaitForASignalledFenceInsideSignalling(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	f := dmafence.New(dmafence.ContextAlloc(1), 1)
	require.NoError(t, f.Signal())
	cookie := dmafence.BeginSignalling()
	require.NoError(t, f.Wait(context.Background()))
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

// dma_fence_map's site is the call of BeginSignalling, as the kernel's
// lock_acquire is given _RET_IP_ in dma_fence_begin_signalling: a report's
// held-lock list and a circular-dependency report name the caller's
// function and line, not BeginSignalling.
func TestSignallingSiteIsTheCaller(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var l lockclass.Mutex
	l.Init(lockclass.WithName("&vm->notifier_lock"))
	l.Lock()
	dmafence.MightWait() // notifier_lock -> dma_fence_map
	l.Unlock()

	_, file, line, _ := runtime.Caller(0)
	cookie := dmafence.BeginSignalling() // line+1: the site
	nonblock.StartAtomic()
	nonblock.MightSleep() // a report with the held-lock list
	nonblock.EndAtomic()
	l.Lock() // dma_fence_map -> notifier_lock closes the cycle
	l.Unlock()
	dmafence.EndSignalling(cookie)

	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.CircularDependency}, rec.Kinds())
	held := regexp.MustCompile(fmt.Sprintf(
		`\(dma_fence_map\)\{[^}]*\}-\{0:0\}, at: dmafence_test\.TestSignallingSiteIsTheCaller\+0x[0-9a-f]+ dmafence/%s:%d\n`,
		regexp.QuoteMeta(filepath.Base(file)), line+1))
	sleep, cycle := rec.Reports()[0].Text, rec.Reports()[1].Text
	require.Regexp(t, `1 lock held by [^\n]*:\n #0: [0-9a-f]+ `+held.String(), sleep)
	require.Regexp(t, `but task is already holding lock:\n[0-9a-f]+ `+held.String(), cycle)
	require.Regexp(t, `1 lock held by [^\n]*:\n #0: [0-9a-f]+ `+held.String(), cycle)
	require.NotContains(t, sleep+cycle, "at: dmafence.BeginSignalling")
}

// The section Signal opens itself is dma_fence_signal's in the kernel, so
// its site is in Signal: a callback's report names it.
func TestSignalSiteIsSignal(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	f := dmafence.New(dmafence.ContextAlloc(1), 1)
	require.NoError(t, f.AddCallback(func(*dmafence.Fence) { nonblock.MightSleep() }))
	require.NoError(t, f.Signal())
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	require.Regexp(t, `1 lock held by [^\n]*:\n #0: [0-9a-f]+ \(dma_fence_map\)\{[^}]*\}-\{0:0\}, at: dmafence\.\(\*Fence\)\.signal\+0x[0-9a-f]+ dmafence/fence\.go:\d+\n`,
		rec.Last().Text)
}

// dma_fence's might-wait annotation is might_sleep() too: declaring a
// fence wait in a non-block section is reported even though nothing waits
// (__dma_fence_might_wait with might_sleep, as dma_fence_wait_timeout runs
// them).
func TestMightWaitInANonBlockSectionIsReported(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	nonblock.Start()
	dmafence.MightWait()
	nonblock.End()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "non_block: 1")
}
