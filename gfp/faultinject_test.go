package gfp_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
)

// outcomes allocates n order-1 blocks with flags (freeing each) and
// returns the pattern of failures.
func outcomes(z *gfp.Zone, n int, order int, flags gfp.Flags) string {
	var b strings.Builder
	for range n {
		p, err := z.AllocPages(order, flags)
		if err != nil {
			b.WriteByte('x')
			continue
		}
		b.WriteByte('.')
		z.FreePages(p, order)
	}
	return b.String()
}

func quietAttr(prob int, seed uint64) *gfp.FaultAttr {
	a := gfp.NewFaultAttr(prob, seed)
	a.Verbose = 0
	a.Times = -1
	return a
}

func TestFaultInjectionRepeatsWithASeed(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	a := quietAttr(30, 42)
	z.InjectPageAllocFaults(a)
	first := outcomes(z, 300, 1, gfp.Atomic|gfp.NoWarn)
	require.Contains(t, first, "x")
	require.Contains(t, first, ".")
	n := strings.Count(first, "x")
	require.InDelta(t, 90, n, 40, "about 30%%")
	require.Equal(t, n, a.Failures())
	require.Equal(t, int64(n), z.Stats().FaultsInjected)

	z.InjectPageAllocFaults(a) // re-arming restarts the sequence
	require.Equal(t, first, outcomes(z, 300, 1, gfp.Atomic|gfp.NoWarn))
	z.InjectPageAllocFaults(quietAttr(30, 43))
	require.NotEqual(t, first, outcomes(z, 300, 1, gfp.Atomic|gfp.NoWarn))
	require.NotNil(t, z.InjectPageAllocFaults(nil))
	require.Equal(t, strings.Repeat(".", 50), outcomes(z, 50, 1, gfp.Atomic|gfp.NoWarn))
}

func TestFaultInjectionNeverFailsNoFail(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	a := gfp.NewFaultAttr(100, 1) // times 1
	a.Verbose = 0
	a.MinOrder = 0
	a.IgnoreGFPWait = false
	z.InjectPageAllocFaults(a)
	require.Equal(t, strings.Repeat(".", 20), outcomes(z, 20, 0, gfp.Kernel|gfp.NoFail), "NOFAIL is exempt")
	require.Zero(t, a.Failures())
	require.Equal(t, "x..", outcomes(z, 3, 0, gfp.Kernel), "and consumed no budget: times is still 1")
}

// The kernel's order of checks: the page-alloc knobs first, then times,
// space and interval, then the dice.
func TestFaultInjectionOrderOfChecks(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)

	a := quietAttr(100, 1)
	z.InjectPageAllocFaults(a)
	require.Equal(t, "....", outcomes(z, 4, 0, gfp.Atomic), "min-order 1: order 0 is never failed")
	require.Equal(t, "....", outcomes(z, 4, 1, gfp.Kernel), "ignore-gfp-wait: blocking callers are never failed")
	require.Equal(t, "....", outcomes(z, 4, 1, gfp.Atomic|gfp.HighMem), "ignore-gfp-highmem")
	a = quietAttr(100, 1)
	a.IgnoreGFPWait = false
	a.IgnoreGFPHighmem = false
	z.InjectPageAllocFaults(a)
	require.Equal(t, "xx", outcomes(z, 2, 1, gfp.Kernel|gfp.HighMem))

	// space: 8 pages of budget, order-1 calls cost 2 each while the budget
	// is larger than the call.
	a = quietAttr(100, 1)
	a.Space = 8
	z.InjectPageAllocFaults(a)
	require.Equal(t, "...xx", outcomes(z, 5, 1, gfp.Atomic))

	// interval 3: every third call that gets this far.
	a = quietAttr(100, 1)
	a.Interval = 3
	z.InjectPageAllocFaults(a)
	require.Equal(t, "..x..x..x", outcomes(z, 9, 1, gfp.Atomic))
	require.Equal(t, "....", outcomes(z, 4, 0, gfp.Atomic), "filtered calls do not advance the interval")
	require.Equal(t, "..x", outcomes(z, 3, 1, gfp.Atomic))

	// times bounds the failures.
	a = quietAttr(100, 1)
	a.Times = 2
	z.InjectPageAllocFaults(a)
	require.Equal(t, "xx...", outcomes(z, 5, 1, gfp.Atomic))

	// probability 0 disables everything.
	z.InjectPageAllocFaults(quietAttr(0, 1))
	require.Equal(t, "...", outcomes(z, 3, 1, gfp.Atomic))
}

//go:noinline
func requiredCaller(z *gfp.Zone) string { return outcomes(z, 3, 1, gfp.Atomic) }

//go:noinline
func rejectedCaller(z *gfp.Zone) string { return requiredCaller(z) }

func TestFaultInjectionStackFilter(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	a := quietAttr(100, 1)
	a.Require = []string{"github.com/krules/krules/gfp_test.requiredCaller"}
	a.Reject = []string{"github.com/krules/krules/gfp_test.rejected*"}
	z.InjectPageAllocFaults(a)
	require.Equal(t, "...", outcomes(z, 3, 1, gfp.Atomic), "not called from requiredCaller")
	require.Equal(t, "xxx", requiredCaller(z))
	require.Equal(t, "...", rejectedCaller(z), "a rejected frame vetoes")

	a = quietAttr(100, 1)
	a.Require = []string{"github.com/krules/krules/gfp_test.requiredCaller"}
	a.StackDepth = 1 // outcomes only: requiredCaller is out of reach
	z.InjectPageAllocFaults(a)
	require.Equal(t, "...", requiredCaller(z))

	// The depth counts the caller's frames, not krules's own: 2 reaches
	// requiredCaller, above outcomes.
	a = quietAttr(100, 1)
	a.Require = []string{"github.com/krules/krules/gfp_test.requiredCaller"}
	a.StackDepth = 2
	z.InjectPageAllocFaults(a)
	require.Equal(t, "xxx", requiredCaller(z))
}

func TestFaultInjectionPrintsLikeTheKernel(t *testing.T) {
	out := krulestest.CaptureLog(t)
	rec := krulestest.Record(t)
	z := newZone(t, 4<<20)
	a := gfp.NewFaultAttr(100, 1)
	a.Times = 2
	z.InjectPageAllocFaults(a)
	_, err := z.AllocPages(1, gfp.Atomic|gfp.NoWarn)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Empty(t, out.String(), "NOWARN silences the printout")
	_, err = z.AllocPages(1, gfp.Atomic)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Contains(t, out.String(), "FAULT_INJECTION: forcing a failure.\nname fail_page_alloc, interval 1, probability 100, space 0, times 1\n")
	require.Contains(t, out.String(), "Call Trace:\n", "verbose 2 dumps the stack")
	require.Contains(t, out.String(), "gfp_test.TestFaultInjectionPrintsLikeTheKernel")
	require.Zero(t, rec.Len(), "an injected failure is not a report, and is not warn_alloc'ed")
}

func TestFailslab(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	a := quietAttr(100, 1)
	a.Times = 1
	z.InjectSlabFaults(a)
	b1, err := z.Alloc(64, gfp.Kernel)
	require.NoError(t, err, "ignore-gfp-wait")
	b2, err := z.Alloc(64, gfp.Atomic|gfp.NoFail)
	require.NoError(t, err, "NOFAIL exempt")
	_, err = z.Alloc(64, gfp.Atomic)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, int64(1), z.Stats().SlabFaultsInjected)
	b3, err := z.Alloc(64, gfp.Atomic)
	require.NoError(t, err, "times was 1")
	for _, b := range [][]byte{b1, b2, b3} {
		z.Free(b)
	}
}

// failslab's space budget is spent in the cache's object_size: a kmalloc
// of 50 bytes comes from kmalloc-64 and costs 64.
func TestFailslabSpaceCountsTheObjectSize(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	a := quietAttr(100, 1)
	a.Space = 128
	z.InjectSlabFaults(a)
	b, err := z.Alloc(50, gfp.Atomic)
	require.NoError(t, err, "space 128 > 64: spent, 64 left")
	_, err = z.Alloc(50, gfp.Atomic)
	require.ErrorIs(t, err, gfp.ErrNoMemory, "space 64 is not more than 64")
	z.Free(b)
}

// should_fail_ex's interval check counts every call that reaches it and
// fails only when the count is a multiple of the interval: interval 2
// fails every second call, starting with the second.
func TestFaultInjectionIntervalTwo(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	a := quietAttr(100, 1)
	a.Interval = 2
	z.InjectPageAllocFaults(a)
	require.Equal(t, ".x.x.x", outcomes(z, 6, 1, gfp.Atomic))
}

// The dice fail a call when probability > prandom % 100: probability 100
// always fails, and 99 lets through the calls that roll 99.
func TestFaultInjectionProbabilityIsAStrictBound(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	z.InjectPageAllocFaults(quietAttr(100, 7))
	require.Equal(t, strings.Repeat("x", 500), outcomes(z, 500, 1, gfp.Atomic))
	z.InjectPageAllocFaults(quietAttr(99, 7))
	got := outcomes(z, 1000, 1, gfp.Atomic)
	require.Contains(t, got, ".", "about one call in a hundred gets through")
	require.Less(t, strings.Count(got, "."), 50)
}

// fail_dump: verbose 1 prints the one line and no stack; the printout is
// rate limited by verbose_ratelimit_interval_ms and _burst, while the
// failures themselves are not.
func TestFaultInjectionVerboseOneAndRateLimit(t *testing.T) {
	out := krulestest.CaptureLog(t)
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	a := gfp.NewFaultAttr(100, 1)
	a.Times = -1
	a.Verbose = 1
	a.VerboseInterval = time.Hour
	a.VerboseBurst = 2
	z.InjectPageAllocFaults(a)
	require.Equal(t, "xxx", outcomes(z, 3, 1, gfp.Atomic))
	require.Equal(t, 2, strings.Count(out.String(), "FAULT_INJECTION: forcing a failure.\n"), "a burst of 2")
	require.NotContains(t, out.String(), "Call Trace:", "verbose 1: no stack")
}

// failslab never fails a request that may not even spin
// (!gfpflags_allow_spinning: neither reclaim bit), as newer kernels'
// should_failslab does.
func TestFailslabSkipsTrylockRequests(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	z.InjectSlabFaults(quietAttr(100, 1))
	b, err := z.Alloc(64, gfp.NoWarn)
	require.NoError(t, err)
	z.Free(b)
	_, err = z.Alloc(64, gfp.NoWait)
	require.ErrorIs(t, err, gfp.ErrNoMemory, "GFP_NOWAIT may spin, and is failed")
	require.Equal(t, int64(1), z.Stats().SlabFaultsInjected)
}

// kvmalloc falls back to vmalloc only above a page: a failed kmalloc of a
// page or less is the answer (__kvmalloc_node_noprof: ret || size <=
// PAGE_SIZE).
func TestKvmallocOfAPageDoesNotFallBackToVmalloc(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	a := quietAttr(100, 1)
	a.IgnoreGFPWait = false
	z.InjectSlabFaults(a)
	_, err := z.Kvmalloc(gfp.PageSize, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	b, err := z.Kvmalloc(gfp.PageSize+1, gfp.Kernel)
	require.NoError(t, err, "above a page, vmalloc takes over")
	require.True(t, z.IsVmalloc(b))
	z.Kvfree(b)
}
