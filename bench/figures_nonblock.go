package main

import (
	"fmt"
	"io"
	"runtime/trace"
	"testing"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/nonblock"
)

// nonblockFigures price the trace regions sections open: with tracing off
// (the normal case) against Start+End as they were without regions, and with
// tracing on against tracing off.
var nonblockFigures = []figure{
	{
		Name: "Start+End, tracing off", Baseline: "no regions", Target: 1.3, MaxAllocs: 0,
		base:  loop(func() { startWithoutRegion(); endWithoutRegion() }),
		rules: loop(func() { nonblock.Start(); nonblock.End() }),
	},
	{
		Name: "Start+End, tracing on", Baseline: "tracing off", MaxAllocs: -1,
		base:  loop(func() { nonblock.Start(); nonblock.End() }),
		rules: tracing(loop(func() { nonblock.Start(); nonblock.End() })),
	},
}

// startWithoutRegion and endWithoutRegion are nonblock.Start and End without
// the trace regions (and the sweep check): the baseline the regions are
// priced against.
//
//go:noinline
func startWithoutRegion() {
	t := task.ClaimHead(task.GoID())
	if t == nil {
		t = task.Current()
	}
	t.NonBlock++
}

//go:noinline
func endWithoutRegion() {
	t := task.PeekHead(task.GoID())
	if t == nil || t.NonBlock == 0 {
		if t = task.Lookup(); t == nil || t.NonBlock == 0 {
			panic("unbalanced")
		}
	}
	t.NonBlock--
	t.ReleaseIfEmpty()
}

// tracing runs a benchmark with the execution tracer on (a flight recorder,
// which coexists with go test -trace).
func tracing(bench func(b *testing.B)) func(b *testing.B) {
	return func(b *testing.B) {
		fr := trace.NewFlightRecorder(trace.FlightRecorderConfig{MaxBytes: 1 << 20})
		if err := fr.Start(); err != nil {
			b.Fatal(err)
		}
		defer fr.Stop()
		bench(b)
	}
}

// demonstrateTraceCheck shows a block nobody announced with MightSleep,
// found in the execution trace.
func demonstrateTraceCheck(w io.Writer) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "2. The same callback sleeping with time.Sleep, which no might-sleep check announces, found by the trace checker:")
	reports := krules.Collect(func() {
		tc, err := nonblock.StartTraceCheck(nonblock.IgnoreAllocBlocks())
		if err != nil {
			fmt.Fprintln(w, "    trace checker:", err)
			return
		}
		done := make(chan struct{})
		krules.Go("oom_reaper", func() {
			defer close(done)
			nonblock.Start()
			defer nonblock.End()
			time.Sleep(time.Millisecond)
		})
		<-done
		if err := tc.Stop(); err != nil {
			fmt.Fprintln(w, "    trace checker:", err)
		}
	})
	for _, r := range reports {
		fmt.Fprintln(w)
		fmt.Fprint(w, indent(r.Text))
	}
}
