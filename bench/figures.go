package main

import (
	"slices"
	"testing"

	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/nonblock"
)

// A figure is one cost of the rules: a krules operation measured beside its
// baseline in the same run. Target is the largest acceptable ratio
// krules/baseline (0 when none is set); MaxAllocs, when >= 0, the
// allocations per op krules may make. OverNs, when > 0, is a budget instead
// of a ratio: the most krules may cost over the baseline per Unit, in ns,
// with Units of them per operation (notifier calls, say).
type figure struct {
	Name      string
	Baseline  string
	Target    float64
	MaxAllocs int64
	OverNs    float64
	Units     int
	Unit      string
	base      func(b *testing.B)
	rules     func(b *testing.B)
}

// figures lists every hot path with its baseline, in the report's order:
// each package's figures are a group in its figures_<package>.go, listed
// here once. Each also runs as a Go benchmark
// (BenchmarkFigures/<name>/{baseline,krules}).
var figures = slices.Concat(
	baseFigures,
	nonblockFigures,
	lockclassFigures,
	contendedFigures,
	compiledOutFigures,
	gfpFigures,
	mempoolFigures,
	mmnotifierFigures,
	dmafenceFigures,
	primitivesGroup,
	processFigures(),
)

var baseFigures = []figure{
	{
		Name: "current lookup", Baseline: "empty call", Target: 5, MaxAllocs: 0,
		base: loop(emptyCall),
		rules: loop(func() {
			if task.Lookup() != nil {
				panic("unexpected task state")
			}
		}),
	},
	{
		Name: "MightSleep outside sections", Baseline: "empty call", Target: 5, MaxAllocs: 0,
		base:  loop(emptyCall),
		rules: loop(nonblock.MightSleep),
	},
	{
		Name: "nonblock.Start+End", Baseline: "empty call", MaxAllocs: 0,
		OverNs: 10, Units: 1, Unit: "pair",
		base:  loop(emptyCall),
		rules: loop(func() { nonblock.Start(); nonblock.End() }),
	},
}

//go:noinline
func emptyCall() {}

// loop turns an operation into a benchmark body.
func loop(op func()) func(b *testing.B) {
	return func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			op()
		}
	}
}
