package gfp_test

import (
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
	require.Contains(t, r.Text, r.Headline+",cpuset=/,mems_allowed=0\nCPU: - PID: ")
	require.Contains(t, r.Text, "\nMem-Info:\nNode 0 Normal free:1024kB boost:0kB min:1024kB low:")
	require.Contains(t, r.Text, "gfp.(*Zone).AllocPages+")

	_, err = z.AllocPages(1, gfp.Kernel|gfp.Zero)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Contains(t, rec.Last().Headline, "order:1, mode:0xdc0(GFP_KERNEL|__GFP_ZERO)")

	_, err = z.AllocPages(0, gfp.Kernel|gfp.NoWarn)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, 2, rec.Len(), "NOWARN keeps quiet")
	st := z.Stats()
	require.Equal(t, int64(3), st.Failures[0], "with the one that ended the pressure")
	require.Equal(t, int64(1), st.Failures[1])
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
	require.Regexp(t, `^WARNING: PID: \d+ at gfp/slowpath_test.go:\d+ `, rec.Reports()[0].Headline)
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
	pressure(t, z)
	s := gfp.NoReclaimSave()
	rest := drainTo(t, z, gfp.Kernel|gfp.NoWarn)
	gfp.NoReclaimRestore(s)
	require.Zero(t, z.Stats().Free)

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
	for _, p := range rest {
		z.FreePages(p, 0)
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
