package gfp_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
)

// pressure fills z down to its min watermark with GFP_KERNEL and returns
// the pages, which the test frees when it ends.
func pressure(t *testing.T, z *gfp.Zone) []*gfp.Page {
	t.Helper()
	pages := drainTo(t, z, gfp.Kernel|gfp.NoWarn)
	t.Cleanup(func() {
		for _, p := range pages {
			if p != nil {
				z.FreePages(p, 0)
			}
		}
	})
	return pages
}

// emptyZone takes every page of z: pressure down to the min watermark,
// then the reserves under PF_MEMALLOC (memalloc_noreclaim_save). It
// returns the reserve pages; those the test has not set to nil are freed
// when it ends.
func emptyZone(t *testing.T, z *gfp.Zone) []*gfp.Page {
	t.Helper()
	pressure(t, z)
	s := gfp.NoReclaimSave()
	rest := drainTo(t, z, gfp.Kernel|gfp.NoWarn)
	gfp.NoReclaimRestore(s)
	require.Zero(t, z.Stats().Free)
	t.Cleanup(func() {
		for _, p := range rest {
			if p != nil {
				z.FreePages(p, 0)
			}
		}
	})
	return rest
}

// heldShrinker frees pages it holds, n a Scan call.
type heldShrinker struct {
	gfp.Shrinker
	z       *gfp.Zone
	held    chan *gfp.Page
	perScan int
	calls   atomic.Int64
	flags   atomic.Uint32 // the task flags Scan ran with
	gfpSeen atomic.Uint32
}

func newHeldShrinker(z *gfp.Zone, pages []*gfp.Page, perScan int) *heldShrinker {
	s := &heldShrinker{z: z, held: make(chan *gfp.Page, len(pages)), perScan: perScan}
	for _, p := range pages {
		s.held <- p
	}
	s.Shrinker = gfp.Shrinker{
		Name:  "held",
		Seeks: gfp.DefaultSeeks,
		Count: func(*gfp.ShrinkControl) uint64 { return uint64(len(s.held)) },
		Scan: func(sc *gfp.ShrinkControl) uint64 {
			s.calls.Add(1)
			s.flags.Store(uint32(gfp.CurrentTaskFlags()))
			s.gfpSeen.Store(uint32(sc.GFP))
			return s.scanHeld(sc)
		},
	}
	return s
}

// scanHeld frees up to perScan held pages.
func (s *heldShrinker) scanHeld(sc *gfp.ShrinkControl) uint64 {
	freed := uint64(0)
	for range min(uint64(s.perScan), sc.NrToScan) {
		select {
		case p := <-s.held:
			s.z.FreePages(p, 0)
			freed++
		default:
		}
	}
	return freed
}

func (s *heldShrinker) release() {
	for {
		select {
		case p := <-s.held:
			s.z.FreePages(p, 0)
		default:
			return
		}
	}
}

func TestAllocationFailureReport(t *testing.T) {
	rec := krulestest.Record(t)
	z := reserveZone(t)
	pressure(t, z)

	_, err := z.AllocPages(0, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, []krules.Kind{krules.AllocFailure}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "TestAllocationFailureReport: page allocation failure: order:0, mode:0xcc0(GFP_KERNEL), nodemask=(null)", r.Headline)
	require.Contains(t, r.Text, r.Headline+",cpuset=/,mems_allowed=0\nCPU: - UID: ")
	require.Contains(t, r.Text, "\nMem-Info:\nNode 0 Normal free:1024kB boost:0kB min:1024kB low:")
	// show_free_areas' fields in the kernel's order, the free blocks, then
	// __show_mem's totals.
	require.Regexp(t, `\nNode 0 Normal free:1024kB boost:0kB min:1024kB low:\d+kB high:\d+kB reserved_highatomic:0KB present:\d+kB managed:\d+kB free_pcp:\d+kB\nlowmem_reserve\[\]: 0 0 0 0\nNode 0 Normal: (\d+\*\d+kB ){11}= \d+kB\n`, r.Text)
	require.Regexp(t, `\nNode 0 Normal: (\d+\*\d+kB ){11}= 1024kB\n`, r.Text, "the blocks add up to the free pages, not to their count")
	require.Contains(t, r.Text, fmt.Sprintf("kB\n%d pages RAM\n0 pages HighMem/MovableOnly\n0 pages reserved\n", z.Pages()))
	require.Contains(t, r.Text, "gfp.(*Zone).AllocPages+")

	_, err = z.AllocPages(1, gfp.Kernel|gfp.Zero)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Contains(t, rec.Last().Headline, "order:1, mode:0xdc0(GFP_KERNEL|__GFP_ZERO)")

	_, err = z.Alloc(3*gfp.PageSize, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Contains(t, rec.Last().Headline, "order:2, mode:0x40cc0(GFP_KERNEL|__GFP_COMP)", "kmalloc_large adds __GFP_COMP")

	_, err = z.AllocPages(0, gfp.Kernel|gfp.NoWarn)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, 3, rec.Len(), "NOWARN keeps quiet")
	st := z.Stats()
	require.Equal(t, int64(3), st.Failures[0], "with the one that ended the pressure")
	require.Equal(t, int64(1), st.Failures[1])
	require.Equal(t, int64(1), st.Failures[2])
}

// Direct reclaim runs the shrinkers with the allocation's flags, under
// PF_MEMALLOC, and the allocation gets what they freed.
func TestDirectReclaimFeedsTheAllocation(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	pages := pressure(t, z)
	s := newHeldShrinker(z, pages[:100], 16)
	clear(pages[:100]) // the shrinker owns them now
	require.NoError(t, z.RegisterShrinker(&s.Shrinker))
	defer z.UnregisterShrinker(&s.Shrinker)
	defer s.release()

	before := z.Stats()
	p, err := z.AllocPages(0, gfp.Kernel)
	require.NoError(t, err)
	defer z.FreePages(p, 0)
	st := z.Stats()
	require.Equal(t, before.AllocStall+1, st.AllocStall)
	require.GreaterOrEqual(t, st.PgStealDirect, int64(gfp.SwapClusterMax), "reclaim aims for SWAP_CLUSTER_MAX pages")
	require.NotZero(t, st.PgScanDirect)
	require.Equal(t, gfp.PFMemalloc, gfp.TaskFlags(s.flags.Load()), "shrinkers run with PF_MEMALLOC")
	require.Equal(t, gfp.Kernel, gfp.Flags(s.gfpSeen.Load()))
	require.Zero(t, gfp.CurrentTaskFlags(), "the scope ends with reclaim")
}

func TestNoFSReclaimSeesNoFS(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	pressure(t, z)
	var seen atomic.Uint32
	s := &gfp.Shrinker{
		Name:  "fs",
		Count: func(*gfp.ShrinkControl) uint64 { return 1000 },
		Scan: func(sc *gfp.ShrinkControl) uint64 {
			seen.Store(uint32(sc.GFP))
			if sc.GFP&gfp.FS == 0 {
				return gfp.ShrinkStop
			}
			return 0
		},
	}
	require.NoError(t, z.RegisterShrinker(s))
	defer z.UnregisterShrinker(s)
	saved := gfp.NoFSSave()
	_, err := z.AllocPages(0, gfp.Kernel|gfp.NoRetry|gfp.NoWarn)
	gfp.NoFSRestore(saved)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, gfp.NoFS|gfp.NoRetry|gfp.NoWarn, gfp.Flags(seen.Load()), "the scope reaches the shrinker")
}

// liar claims objects but frees none: reclaim makes no progress while
// should_reclaim_retry believes it could.
func liar(calls *atomic.Int64) *gfp.Shrinker {
	return &gfp.Shrinker{
		Name:  "liar",
		Seeks: gfp.DefaultSeeks,
		Count: func(*gfp.ShrinkControl) uint64 { return 1 << 20 },
		Scan:  func(*gfp.ShrinkControl) uint64 { calls.Add(1); return 0 },
	}
}

func TestRetriesAreBoundedAndNoRetryStopsAfterOneReclaim(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	pressure(t, z)
	var calls atomic.Int64
	s := liar(&calls)
	require.NoError(t, z.RegisterShrinker(s))
	defer z.UnregisterShrinker(s)
	var ooms atomic.Int64
	defer z.OnOOM(func(gfp.OOMControl) int { ooms.Add(1); return 0 })()

	base := z.Stats().AllocStall
	_, err := z.AllocPages(0, gfp.Kernel|gfp.NoRetry|gfp.NoWarn)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, base+1, z.Stats().AllocStall, "__GFP_NORETRY: one light attempt")
	require.Zero(t, ooms.Load(), "and no OOM")
	require.NotZero(t, calls.Load())

	_, err = z.AllocPages(0, gfp.Kernel|gfp.NoWarn)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, base+1+gfp.MaxReclaimRetries+1, z.Stats().AllocStall, "MAX_RECLAIM_RETRIES rounds without progress, then give up")
	require.Equal(t, int64(1), ooms.Load(), "then the OOM hook")

	_, err = z.AllocPages(0, gfp.Kernel|gfp.RetryMayFail|gfp.NoWarn)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, base+1+2*(gfp.MaxReclaimRetries+1), z.Stats().AllocStall)
	require.Equal(t, int64(1), ooms.Load(), "__GFP_RETRY_MAYFAIL never reaches the OOM hook")
}

func TestCostlyOrdersGiveUpEarly(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	// Take every order-4 block, so that one must be reclaimed.
	var big []*gfp.Page
	for {
		p, err := z.AllocPages(4, gfp.Kernel|gfp.NoWarn)
		if err != nil {
			break
		}
		big = append(big, p)
	}
	defer func() {
		for _, p := range big {
			z.FreePages(p, 4)
		}
	}()
	var calls atomic.Int64
	s := liar(&calls)
	require.NoError(t, z.RegisterShrinker(s))
	defer z.UnregisterShrinker(s)
	var ooms atomic.Int64
	defer z.OnOOM(func(gfp.OOMControl) int { ooms.Add(1); return 0 })()

	before := z.Stats().AllocStall
	_, err := z.AllocPages(4, gfp.Kernel|gfp.NoWarn)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, before+1, z.Stats().AllocStall, "a costly order without RETRY_MAYFAIL gives up after one reclaim")
	require.Zero(t, ooms.Load(), "the OOM hook does not help costly orders")
}

func TestOOMHookCanFreeMemory(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	pages := pressure(t, z)
	before := z.Stats().OOMCalls
	var seen gfp.OOMControl
	spare := pages[:8]
	defer z.OnOOM(func(oc gfp.OOMControl) int {
		seen = oc
		for i, p := range spare {
			z.FreePages(p, 0)
			spare[i] = nil
		}
		n := len(spare)
		spare = nil
		return n
	})()
	p, err := z.AllocPages(0, gfp.Kernel)
	require.NoError(t, err)
	z.FreePages(p, 0)
	require.Equal(t, gfp.OOMControl{Zone: z, Order: 0, GFP: gfp.Kernel}, seen)
	require.Equal(t, before+1, z.Stats().OOMCalls)
}

func TestNoFailMisuseWarns(t *testing.T) {
	rec := krulestest.Record(t)
	z := reserveZone(t)
	pressure(t, z)

	// Without direct reclaim NOFAIL cannot be honoured: a warning, then a
	// failure, here below GFP_ATOMIC's share of the reserve.
	atomicShare := drainTo(t, z, gfp.Atomic|gfp.NoWarn)
	_, err := z.AllocPages(0, gfp.Atomic|gfp.NoFail)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, krules.GFPMisuse, rec.Reports()[0].Kind)
	require.Contains(t, rec.Reports()[0].Text, "WARN_ON_ONCE(!can_direct_reclaim): __GFP_NOFAIL without __GFP_DIRECT_RECLAIM, mode:0x8820(GFP_ATOMIC|__GFP_NOFAIL)\n")
	require.Regexp(t, `^WARNING: CPU: - PID: \d+ at gfp/slowpath_test.go:\d+ `, rec.Reports()[0].Headline)
	require.Equal(t, krules.AllocFailure, rec.Last().Kind)
	rec.Clear()
	for _, p := range atomicShare {
		z.FreePages(p, 0)
	}

	// Order > 1 and PF_MEMALLOC warn too, and the allocation still
	// succeeds: under pressure NOFAIL gets the reserves.
	p, err := z.AllocPages(2, gfp.Kernel|gfp.NoFail)
	require.NoError(t, err)
	z.FreePages(p, 2)
	require.Equal(t, krules.GFPMisuse, rec.Reports()[0].Kind)
	require.Contains(t, rec.Reports()[0].Text, "WARN_ON_ONCE(order > 1): __GFP_NOFAIL with order 2")

	s := gfp.NoReclaimSave()
	p, err = z.AllocPages(0, gfp.Kernel|gfp.NoFail)
	gfp.NoReclaimRestore(s)
	require.NoError(t, err)
	z.FreePages(p, 0)
	require.Contains(t, rec.Last().Text, "WARN_ON_ONCE(current->flags & PF_MEMALLOC)")
	n := rec.Len()

	p, _ = z.AllocPages(0, gfp.Atomic|gfp.NoFail|gfp.NoWarn)
	z.FreePages(p, 0)
	p, _ = z.AllocPages(2, gfp.Kernel|gfp.NoFail)
	z.FreePages(p, 2)
	require.Equal(t, n, rec.Len(), "each is WARN_ON_ONCE")
}

// A NOFAIL allocation in an empty zone does not fail: it keeps trying,
// sleeping between rounds, until somebody frees memory.
func TestNoFailWaitsForMemory(t *testing.T) {
	rec := krulestest.Record(t)
	z := reserveZone(t)
	rest := emptyZone(t, z)

	got := make(chan *gfp.Page)
	go func() {
		p, err := z.AllocPages(0, gfp.Kernel|gfp.NoFail)
		if err != nil {
			panic(err)
		}
		got <- p
	}()
	select {
	case <-got:
		t.Fatal("NOFAIL returned without memory")
	case <-time.After(50 * time.Millisecond):
	}
	for i, p := range rest {
		z.FreePages(p, 0)
		rest[i] = nil
	}
	z.DrainPages()
	p := <-got
	z.FreePages(p, 0)
	// The OOM step warned once that nothing could be killed.
	require.Equal(t, []krules.Kind{krules.GFPMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "WARN_ON_ONCE_GFP(gfp_mask & __GFP_NOFAIL): out of memory and nothing to kill")
}

// Under PF_MEMALLOC (reclaim itself, memalloc_noreclaim_save) an
// allocation takes the reserves but never enters direct reclaim, even with
// GFP_KERNEL and shrinkable memory there: reclaim does not recurse. In an
// empty zone it fails instead, and the shrinker is never asked.
func TestPFMemallocNeverEntersDirectReclaim(t *testing.T) {
	rec := krulestest.Record(t)
	z := reserveZone(t)
	held := pressure(t, z)
	s := newHeldShrinker(z, nil, 1)
	require.NoError(t, z.RegisterShrinker(&s.Shrinker))
	defer z.UnregisterShrinker(&s.Shrinker)
	stalls := z.Stats().AllocStall // the pressure's own
	flags := gfp.NoReclaimSave()
	rest := drainTo(t, z, gfp.Kernel|gfp.NoWarn) // the reserves, down to nothing
	_, err := z.AllocPages(0, gfp.Kernel|gfp.NoWarn)
	gfp.NoReclaimRestore(flags)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.NotEmpty(t, rest, "PF_MEMALLOC took the reserves")
	require.Equal(t, stalls, z.Stats().AllocStall, "no direct reclaim")
	require.Zero(t, s.calls.Load(), "no shrinker asked")
	for _, p := range rest {
		z.FreePages(p, 0)
	}
	require.NotEmpty(t, held)
	require.Empty(t, rec.Kinds())
}

// liarWith registers a liar and an OOM hook counting its calls, both
// removed when the test ends.
func liarWith(t *testing.T, z *gfp.Zone) (calls, ooms *atomic.Int64) {
	t.Helper()
	calls, ooms = new(atomic.Int64), new(atomic.Int64)
	s := liar(calls)
	require.NoError(t, z.RegisterShrinker(s))
	t.Cleanup(func() { z.UnregisterShrinker(s) })
	t.Cleanup(z.OnOOM(func(gfp.OOMControl) int { ooms.Add(1); return 0 }))
	return calls, ooms
}

// A request the shrinkers cannot help retries MAX_RECLAIM_RETRIES rounds
// without progress (should_reclaim_retry) and then reaches the OOM hook,
// or not, as __alloc_pages_may_oom decides:
//   - PAGE_ALLOC_COSTLY_ORDER is 3 and "costly" means above it: an order-3
//     request is treated like an order-0 one and reaches the hook;
//   - __GFP_RETRY_MAYFAIL lets a costly order retry (the slow path's costly
//     exit is only for requests without it) and still never calls the hook;
//   - __GFP_THISNODE keeps the killer away after the usual retries.
func TestRetriesWithoutProgressThenTheOOMHookOrNot(t *testing.T) {
	for _, c := range []struct {
		name  string
		order int
		flags gfp.Flags
		ooms  int64
	}{
		{"order 3 is not costly", gfp.CostlyOrder, gfp.Kernel, 1},
		{"RETRY_MAYFAIL costly order", gfp.CostlyOrder + 1, gfp.Kernel | gfp.RetryMayFail, 0},
		{"THISNODE", 0, gfp.Kernel | gfp.ThisNode, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			krulestest.Check(t)
			z := reserveZone(t)
			pressure(t, z)
			_, ooms := liarWith(t, z)
			before := z.Stats().AllocStall
			_, err := z.AllocPages(c.order, c.flags|gfp.NoWarn)
			require.ErrorIs(t, err, gfp.ErrNoMemory)
			require.Equal(t, before+gfp.MaxReclaimRetries+1, z.Stats().AllocStall, "retries like order 0")
			require.Equal(t, c.ooms, ooms.Load(), "OOM hook calls")
		})
	}
}

// churn is a shrinker whose every Scan call frees one page and takes
// another back under its PF_MEMALLOC scope: reclaim makes progress, yet
// the zone's free count never moves. It stops after limit calls, so a
// slow path that would retry forever ends.
type churn struct {
	gfp.Shrinker
	z     *gfp.Zone
	held  []*gfp.Page
	calls atomic.Int64
}

func newChurn(t *testing.T, z *gfp.Zone, seed []*gfp.Page, limit int64) *churn {
	c := &churn{z: z, held: seed}
	c.Shrinker = gfp.Shrinker{
		Name:  "churn",
		Seeks: gfp.DefaultSeeks,
		Count: func(*gfp.ShrinkControl) uint64 { return 1 << 20 },
		Scan: func(*gfp.ShrinkControl) uint64 {
			if c.calls.Add(1) > limit {
				return 0
			}
			z.FreePages(c.held[len(c.held)-1], 0)
			p, err := z.AllocPages(0, gfp.Atomic|gfp.NoWarn)
			if err != nil {
				panic(err)
			}
			c.held[len(c.held)-1] = p
			return 1
		},
	}
	require.NoError(t, z.RegisterShrinker(&c.Shrinker))
	t.Cleanup(func() {
		z.UnregisterShrinker(&c.Shrinker)
		for _, p := range c.held {
			z.FreePages(p, 0)
		}
	})
	return c
}

// should_reclaim_retry resets its count of rounds without progress only
// for orders up to PAGE_ALLOC_COSTLY_ORDER: a costly __GFP_RETRY_MAYFAIL
// allocation gives up after MAX_RECLAIM_RETRIES+1 rounds even when every
// round reclaimed something.
func TestCostlyOrderProgressDoesNotResetTheRetryCount(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	pages := pressure(t, z)
	c := newChurn(t, z, []*gfp.Page{pages[0]}, 10000)
	pages[0] = nil
	before := z.Stats().AllocStall
	_, err := z.AllocPages(gfp.CostlyOrder+1, gfp.Kernel|gfp.RetryMayFail|gfp.NoWarn)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, before+gfp.MaxReclaimRetries+1, z.Stats().AllocStall)
	require.Positive(t, c.calls.Load())
}

// should_reclaim_retry retries only if the free pages plus everything
// reclaim could still free would pass the min watermark: with nothing
// reclaimable, one round of direct reclaim without progress is the last.
func TestNoRetryWhenReclaimCouldNotReachMin(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	pressure(t, z)
	var ooms atomic.Int64
	defer z.OnOOM(func(gfp.OOMControl) int { ooms.Add(1); return 0 })()
	before := z.Stats().AllocStall
	_, err := z.AllocPages(0, gfp.Kernel|gfp.NoWarn)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, before+1, z.Stats().AllocStall)
	require.Equal(t, int64(1), ooms.Load(), "then the OOM hook")
}

// When the OOM step reports progress, __alloc_pages_slowpath resets
// no_progress_loops and retries: another MAX_RECLAIM_RETRIES+1 rounds of
// reclaim before the OOM hook is called again. The hook here reports
// progress as out_of_memory does once it has picked a victim, before the
// victim's memory comes back.
func TestOOMProgressRestartsTheRetryCount(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	pressure(t, z)
	var calls, ooms atomic.Int64
	s := liar(&calls)
	require.NoError(t, z.RegisterShrinker(s))
	defer z.UnregisterShrinker(s)
	defer z.OnOOM(func(gfp.OOMControl) int {
		if ooms.Add(1) == 1 {
			return 1
		}
		return 0
	})()
	before := z.Stats().AllocStall
	_, err := z.AllocPages(0, gfp.Kernel|gfp.NoWarn)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, int64(2), ooms.Load())
	require.Equal(t, before+2*(gfp.MaxReclaimRetries+1), z.Stats().AllocStall)
}

// A __GFP_NOFAIL request that reaches nopage (here through __GFP_NORETRY)
// gets __alloc_pages_cpuset_fallback with ALLOC_MIN_RESERVE: half the min
// reserve, which is enough with the zone at its min watermark.
func TestNoFailAtNopageTakesTheMinReserve(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	pressure(t, z)
	got := make(chan *gfp.Page, 1)
	go func() {
		p, _ := z.AllocPages(0, gfp.Kernel|gfp.NoFail|gfp.NoRetry)
		got <- p
	}()
	var p *gfp.Page
	select {
	case p = <-got:
	case <-time.After(20 * time.Second):
		// Let it finish: no test may leak it.
		z.FreePages(drainTo(t, z, gfp.Atomic|gfp.NoWarn)[0], 0)
		t.Fatal("NOFAIL at nopage did not get the min reserve")
	}
	require.NotNil(t, p)
	z.FreePages(p, 0)
}

// __alloc_pages_direct_reclaim drains the per-CPU page lists before its
// last attempt: blocks cached there are not free pages until drained.
func TestDirectReclaimDrainsThePageCachesBeforeItsLastTry(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	// Cache four order-1 blocks while the zone is above low.
	var cached []*gfp.Page
	for range 4 {
		p, err := z.AllocPages(1, gfp.Kernel)
		require.NoError(t, err)
		cached = append(cached, p)
	}
	for _, p := range cached {
		z.FreePages(p, 1)
	}
	require.Equal(t, int64(8), z.Stats().PCP)
	pages := pressure(t, z)
	require.Equal(t, int64(8), z.Stats().PCP, "order-0 allocations left them")
	// One page to reclaim: not enough for an order-1 block at min.
	s := newHeldShrinker(z, pages[:1], 1)
	pages[0] = nil
	require.NoError(t, z.RegisterShrinker(&s.Shrinker))
	defer z.UnregisterShrinker(&s.Shrinker)
	p, err := z.AllocPages(1, gfp.Kernel|gfp.NoWarn)
	require.NoError(t, err)
	z.FreePages(p, 1)
	require.Equal(t, int64(1), s.calls.Load())
}

// Once out_of_memory has made progress, __alloc_pages_may_oom gives a
// __GFP_NOFAIL request __alloc_pages_cpuset_fallback with
// ALLOC_NO_WATERMARKS at once: in an empty zone it gets the page the OOM
// hook freed, with one call of the hook and without the "nothing to kill"
// warning, which is for the case where the hook freed nothing.
func TestNoFailTakesWhatTheOOMHookFreedBelowTheWatermarks(t *testing.T) {
	rec := krulestest.Record(t)
	z := reserveZone(t)
	rest := emptyZone(t, z)
	before := z.Stats().OOMCalls
	defer z.OnOOM(func(gfp.OOMControl) int {
		if rest[0] == nil {
			return 0
		}
		z.FreePages(rest[0], 0)
		rest[0] = nil
		return 1
	})()
	p, err := z.AllocPages(0, gfp.Kernel|gfp.NoFail)
	require.NoError(t, err)
	z.FreePages(p, 0)
	require.Equal(t, before+1, z.Stats().OOMCalls)
	require.Empty(t, rec.Kinds())
}

// The "nothing to kill" warning of a __GFP_NOFAIL request is
// WARN_ON_ONCE_GFP: __GFP_NOWARN keeps it quiet without using up the once,
// and either way the request gets a page below the watermarks.
func TestNoFailOOMWarningHonoursNoWarn(t *testing.T) {
	rec := krulestest.Record(t)
	z := reserveZone(t)
	pressure(t, z)
	p, err := z.AllocPages(0, gfp.Kernel|gfp.NoFail|gfp.NoWarn)
	require.NoError(t, err)
	defer z.FreePages(p, 0)
	require.Empty(t, rec.Kinds())
	q, err := z.AllocPages(0, gfp.Kernel|gfp.NoFail)
	require.NoError(t, err)
	defer z.FreePages(q, 0)
	require.Equal(t, []krules.Kind{krules.GFPMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "WARN_ON_ONCE_GFP(gfp_mask & __GFP_NOFAIL): out of memory and nothing to kill, order 0")
}

// The function OnOOM returns unregisters that handler only
// (unregister_oom_notifier): the others stay on the chain.
func TestOOMUnregisterRemovesOnlyItsHandler(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	pressure(t, z)
	var first, second atomic.Int64
	unregister := z.OnOOM(func(gfp.OOMControl) int { first.Add(1); return 0 })
	defer z.OnOOM(func(gfp.OOMControl) int { second.Add(1); return 0 })()
	unregister()
	_, err := z.AllocPages(0, gfp.Kernel|gfp.NoWarn)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Zero(t, first.Load())
	require.Equal(t, int64(1), second.Load())
}

// pageFeeder is a heldShrinker with a huge count, counting the Count calls
// (one a priority round) and the pages its Scan calls freed.
type pageFeeder struct {
	*heldShrinker
	rounds atomic.Int64
	freed  atomic.Int64
}

func newPageFeeder(t *testing.T, z *gfp.Zone, pages []*gfp.Page, perScan int) *pageFeeder {
	f := &pageFeeder{heldShrinker: newHeldShrinker(z, pages, perScan)}
	f.Count = func(*gfp.ShrinkControl) uint64 { f.rounds.Add(1); return 1 << 20 }
	f.Scan = func(sc *gfp.ShrinkControl) uint64 {
		n := f.scanHeld(sc)
		f.freed.Add(int64(n))
		return n
	}
	require.NoError(t, z.RegisterShrinker(&f.Shrinker))
	t.Cleanup(func() {
		z.UnregisterShrinker(&f.Shrinker)
		f.release()
	})
	return f
}

// do_try_to_free_pages stops lowering the priority as soon as
// nr_to_reclaim (SWAP_CLUSTER_MAX) pages have come back: a first round
// that frees exactly 32 is the only one. (At DEF_PRIORITY a count of 2^20
// asks for 512 objects, four Scan batches of 128, 8 pages each.)
func TestDirectReclaimStopsOnceSwapClusterMaxPagesCameBack(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	pages := pressure(t, z)
	f := newPageFeeder(t, z, append([]*gfp.Page(nil), pages[:100]...), 8)
	clear(pages[:100])
	p, err := z.AllocPages(0, gfp.Kernel)
	require.NoError(t, err)
	defer z.FreePages(p, 0)
	require.Equal(t, int64(1), f.rounds.Load())
	require.Equal(t, int64(gfp.SwapClusterMax), f.freed.Load())
}

// Direct reclaim for a block of order n aims for at least 1<<n pages, not
// just SWAP_CLUSTER_MAX: krules's stand-in for the kernel reclaiming on
// for high orders (should_continue_reclaim) until compaction could make
// the block.
func TestDirectReclaimAimsForAWholeBlock(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	pages := pressure(t, z)
	f := newPageFeeder(t, z, append([]*gfp.Page(nil), pages[:200]...), 8)
	clear(pages[:200])
	before := z.Stats().AllocStall
	p, err := z.AllocPages(6, gfp.Kernel|gfp.NoWarn) // costly: one reclaim
	if err == nil {
		z.FreePages(p, 6)
	}
	require.Equal(t, before+1, z.Stats().AllocStall)
	// 32 pages at DEF_PRIORITY, then twice that at the next.
	require.Equal(t, int64(2), f.rounds.Load())
	require.Equal(t, int64(3*gfp.SwapClusterMax), f.freed.Load())
}

// Reclaim's progress is counted in pages (reclaim_state->reclaimed): a
// shrinker that frees order-2 blocks is credited four pages a block, so
// eight blocks make the SWAP_CLUSTER_MAX that ends direct reclaim.
func TestReclaimProgressCountsPagesNotBlocks(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	blocks := make(chan *gfp.Page, 16)
	for range 16 {
		p, err := z.AllocPages(2, gfp.Kernel)
		require.NoError(t, err)
		blocks <- p
	}
	defer func() {
		close(blocks)
		for p := range blocks {
			z.FreePages(p, 2)
		}
	}()
	pressure(t, z)
	var rounds atomic.Int64
	s := &gfp.Shrinker{
		Name:  "blocks",
		Seeks: gfp.DefaultSeeks,
		Count: func(*gfp.ShrinkControl) uint64 { rounds.Add(1); return 1 << 20 },
		Scan: func(*gfp.ShrinkControl) uint64 { // 4 calls at DEF_PRIORITY
			n := uint64(0)
			for range 2 {
				select {
				case p := <-blocks:
					z.FreePages(p, 2)
					n++
				default:
				}
			}
			return n
		},
	}
	require.NoError(t, z.RegisterShrinker(s))
	defer z.UnregisterShrinker(s)
	before := z.Stats().PgStealDirect
	p, err := z.AllocPages(0, gfp.Kernel)
	require.NoError(t, err)
	defer z.FreePages(p, 0)
	require.Equal(t, before+gfp.SwapClusterMax, z.Stats().PgStealDirect)
	require.Equal(t, int64(1), rounds.Load())
}

// nopage's __GFP_NOFAIL branch goes back to retry:, past restart:, where
// no_progress_loops is zeroed: the count is kept, so once a request the
// OOM step cannot help (__GFP_THISNODE here) has used up its
// MAX_RECLAIM_RETRIES, each later round of reclaim without progress sends
// it straight back to nopage's ALLOC_MIN_RESERVE fallback. The zone is
// empty and a liar makes every round fruitless; at the first round after
// the first fallback (round MAX_RECLAIM_RETRIES+2) the test frees pages
// that only the fallback may take (between half the min watermark and
// min): the allocation gets them at the end of that very round, not
// MAX_RECLAIM_RETRIES rounds later.
func TestNoFailKeepsTheNoProgressCountAcrossNopage(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	rest := emptyZone(t, z)
	wm := z.Watermarks()
	give := int(wm.Min*3/4) + 1
	require.Less(t, int64(give), wm.Min)
	require.LessOrEqual(t, give, len(rest))

	// Counted from the stalls emptying the zone made.
	firstAfterNopage := z.Stats().AllocStall + gfp.MaxReclaimRetries + 2
	reached, freed := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	s := &gfp.Shrinker{
		Name:  "liar",
		Seeks: gfp.DefaultSeeks,
		Count: func(*gfp.ShrinkControl) uint64 { return 1 << 20 },
		Scan: func(sc *gfp.ShrinkControl) uint64 {
			if z.Stats().AllocStall == firstAfterNopage && once.CompareAndSwap(false, true) {
				close(reached)
				<-freed
			}
			return 0
		},
	}
	require.NoError(t, z.RegisterShrinker(s))
	defer z.UnregisterShrinker(s)

	got := make(chan *gfp.Page, 1)
	go func() {
		p, _ := z.AllocPages(0, gfp.Kernel|gfp.NoFail|gfp.ThisNode)
		got <- p
	}()
	select {
	case <-reached:
	case <-time.After(20 * time.Second):
		t.Fatal("the NOFAIL request never reached its first round after nopage")
	}
	for i := range give {
		z.FreePages(rest[i], 0)
		rest[i] = nil
	}
	z.DrainPages()
	close(freed)
	p := <-got
	require.NotNil(t, p)
	z.FreePages(p, 0)
	require.Equal(t, firstAfterNopage, z.Stats().AllocStall, "one round, then nopage's fallback")
}

// A NOFAIL request that cannot be satisfied loops without sleeping: v6.12's
// __alloc_pages_slowpath goes back to retry: straight after OOM progress,
// and from nopage after only cond_resched(); direct reclaim's
// reclaim_throttle only cond_rescheds without dirty pages; the one tick it
// sleeps is __alloc_pages_may_oom's when oom_lock is contended, which no
// other goroutine takes here. The test samples every goroutine's stack while the
// request goes round and fails if the allocator is ever found asleep.
func TestNoFailLoopYieldsButNeverSleeps(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags gfp.Flags
		kinds []krules.Kind
	}{
		// OOM finds nothing to kill, warns once, and claims progress.
		{"oom progress", gfp.Kernel | gfp.NoFail, []krules.Kind{krules.GFPMisuse}},
		// ThisNode skips the OOM step: every round ends at nopage.
		{"nopage", gfp.Kernel | gfp.NoFail | gfp.ThisNode, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := krulestest.Record(t)
			z := reserveZone(t)
			rest := emptyZone(t, z)
			start := z.Stats().AllocStall

			got := make(chan *gfp.Page, 1)
			go func() {
				p, _ := z.AllocPages(0, tc.flags)
				got <- p
			}()
			buf := make([]byte, 1<<20)
			asleep := ""
			for z.Stats().AllocStall-start < 200 && asleep == "" {
				for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
					if strings.Contains(g, "gfp.(*Zone).slowPath") && strings.Contains(g, "time.Sleep") {
						asleep = g
					}
				}
			}
			for i, p := range rest {
				z.FreePages(p, 0)
				rest[i] = nil
			}
			z.DrainPages()
			p := <-got
			require.NotNil(t, p)
			z.FreePages(p, 0)
			require.Empty(t, asleep, "the NOFAIL loop slept")
			require.Equal(t, tc.kinds, rec.Kinds())
		})
	}
}
