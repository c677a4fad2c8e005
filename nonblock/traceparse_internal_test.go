package nonblock

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/exp/trace"

	"github.com/krules/krules"
)

func TestRegionNamesRoundTrip(t *testing.T) {
	for _, atomic := range []bool{false, true} {
		for _, reopened := range []bool{false, true} {
			for _, depth := range []int32{1, 2, 8, 9, 300} {
				name := regionName(atomic, depth, reopened)
				reg, ok := parseRegion(name)
				require.True(t, ok, name)
				require.Equal(t, sectionRegion{name: name, atomic: atomic, depth: depth, reopened: reopened}, reg)
			}
		}
	}
	require.Equal(t, "krules.non_block=2", regionName(false, 2, false))
	require.Equal(t, "krules.preempt_count=1 (reopened)", regionName(true, 1, true))
	for _, foreign := range []string{"nonblock", "krules.non_block=", "krules.non_block=0", "krules.comm", "krules.preempt_count=x"} {
		_, ok := parseRegion(foreign)
		require.False(t, ok, foreign)
	}
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = regionName(false, 3, false) }))
}

func TestAllocatorFramesAreRecognised(t *testing.T) {
	for fn, want := range map[string]bool{
		"runtime.mallocgc":            true,
		"runtime.mallocgcSmallNoscan": true,
		"runtime.gcAssistAlloc":       true,
		"runtime.gcStart":             true,
		"runtime.chanrecv1":           false,
		"runtime.GC":                  false, // an explicit GC is a block like any other
		"main.mallocgc":               false,
	} {
		require.Equal(t, want, inAllocator(trace.StackFrame{Func: fn}), fn)
	}
	stk := trace.MakeStack([]trace.StackFrame{
		{PC: 0x1000, Func: "runtime.gcParkAssist"}, {PC: 0x2000, Func: "runtime.mallocgc"}, {PC: 0x3000, Func: "main.f"},
	})
	b := stackOf(stk)
	require.True(t, b.alloc)
	require.Equal(t, []uintptr{0x1001, 0x2001, 0x3001}, b.pcs, "call PCs become return addresses again")
	require.Equal(t, krules.AllocBlockInNonBlock, newFinding(1, "", sectionView{depth: 1}, "sync", b, 0).kind)
	require.Equal(t, krules.AllocBlockInNonBlock, newFinding(1, "", sectionView{depth: 1}, "GC mark assist wait for work", blockStack{}, 0).kind)
	require.Equal(t, krules.ScheduleInNonBlock, newFinding(1, "", sectionView{depth: 1}, "sync", blockStack{}, 0).kind)
}

// The options filter what a checker reports: allocation blocks, and system
// calls shorter than the threshold.
func TestTraceOptionsFilterFindings(t *testing.T) {
	alloc := &finding{kind: krules.AllocBlockInNonBlock, goid: 1 << 40, depth: 1, reason: "GC mark assist wait for work"}
	short := &finding{kind: krules.ScheduleInNonBlock, goid: 1 << 40, depth: 1, syscall: time.Millisecond}
	long := &finding{kind: krules.ScheduleInNonBlock, goid: 1 << 40, depth: 1, syscall: time.Second}
	all := []delivery{{f: alloc}, {f: short}, {f: long}}
	for _, tc := range []struct {
		opts []TraceOption
		want int
	}{
		{nil, 2},
		{[]TraceOption{IgnoreAllocBlocks()}, 1},
		{[]TraceOption{SyscallThreshold(0)}, 3},
		{[]TraceOption{SyscallThreshold(time.Second)}, 2}, // a call as long as the threshold counts
		{[]TraceOption{IgnoreAllocBlocks(), SyscallThreshold(2 * time.Second)}, 0},
	} {
		var unclaimed []*krules.Report
		c := &TraceChecker{cfg: traceConfig{syscallMin: DefaultSyscallThreshold}}
		for _, o := range append(tc.opts, OnUnclaimed(func(r *krules.Report) { unclaimed = append(unclaimed, r) })) {
			o(&c.cfg)
		}
		c.deliver(all, true)
		require.Len(t, unclaimed, tc.want)
	}
	require.Contains(t, long.report().Text, "\nblocked on: syscall (lost its P; 1s in the system call)\n")
	require.Contains(t, alloc.report().Text, "\nthe Go runtime blocked the goroutine while it allocated: allocation may sleep in Go\n")
}

// Findings no checker owns (a goroutine outside every checker's lineage)
// are reported as any other report, to whatever claims them: OnUnclaimed
// is for the checker's own findings only.
func TestFindingsNoCheckerOwnsBypassOnUnclaimed(t *testing.T) {
	f := &finding{kind: krules.ScheduleInNonBlock, goid: 1 << 40, depth: 1, reason: "sleep"}
	var unclaimed []*krules.Report
	c := &TraceChecker{cfg: traceConfig{syscallMin: DefaultSyscallThreshold}}
	OnUnclaimed(func(r *krules.Report) { unclaimed = append(unclaimed, r) })(&c.cfg)
	claimed := krules.Collect(func() { c.deliver([]delivery{{f: f}}, false) })
	require.Empty(t, unclaimed)
	require.Len(t, claimed, 1)
	require.Equal(t, krules.ScheduleInNonBlock, claimed[0].Kind)
}
