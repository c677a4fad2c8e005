package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// result is a benchmark result of n ops taking nsPerOp each, with allocs
// allocations an op.
func result(nsPerOp float64, allocs uint64) testing.BenchmarkResult {
	const n = 1000
	return testing.BenchmarkResult{N: n, T: time.Duration(nsPerOp * n), MemAllocs: allocs * n}
}

// A ratio target is met at the target itself and missed just above it; a
// figure without a target has no ratio to miss.
func TestVerdictRatioTargetIsAnUpperBound(t *testing.T) {
	at := row{figure: figure{Name: "f", Target: 3, MaxAllocs: -1}, base: result(100, 0), rules: result(300, 0)}
	require.Empty(t, at.missed())
	over := at
	over.rules = result(302, 0)
	require.Equal(t, []string{"ratio 3.02 > 3.00"}, over.missed())
	none := over
	none.Target = 0
	require.Empty(t, none.missed())
}

// An additive "+N ns" target is per unit: Units calls of at most OverNs
// ns each over the baseline, met at the budget itself.
func TestVerdictBudgetTargetIsPerUnit(t *testing.T) {
	at := row{figure: figure{Name: "f", OverNs: 50, Units: 4, Unit: "call", MaxAllocs: -1}, base: result(1000, 0), rules: result(1200, 0)}
	require.InDelta(t, 50, at.overPerUnit(), 1e-9)
	require.Empty(t, at.missed())
	over := at
	over.rules = result(1204, 0)
	require.Equal(t, []string{"51.0 ns over per call > 50"}, over.missed())
}

// MaxAllocs bounds krules' allocations per op when it is 0 or more, and
// -1 leaves them unchecked; every missed target is listed.
func TestVerdictAllocationsAndEveryMissListed(t *testing.T) {
	r := row{figure: figure{Name: "f", Target: 2, MaxAllocs: 1}, base: result(100, 0), rules: result(100, 1)}
	require.Empty(t, r.missed())
	r.rules = result(300, 2)
	require.Equal(t, []string{"ratio 3.00 > 2.00", "2 allocs/op > 1"}, r.missed())
	r.MaxAllocs = 0
	r.rules = result(100, 1)
	require.Equal(t, []string{"1 allocs/op > 0"}, r.missed())
	r.MaxAllocs = -1
	r.rules = result(100, 7)
	require.Empty(t, r.missed())
}

// The price table prints each target ("≤3.0×", "+50ns"), the verdict "ok"
// or "MISSED" with a budget figure's cost per unit, and ends with every
// missed target and why, or with the sentence that all were met.
func TestPriceTableVerdicts(t *testing.T) {
	rows := []row{
		{figure: figure{Name: "ratio ok", Baseline: "b", Target: 3, MaxAllocs: 0}, base: result(100, 0), rules: result(250, 0)},
		{figure: figure{Name: "budget missed", Baseline: "b", OverNs: 50, Units: 2, Unit: "call", MaxAllocs: 0}, base: result(100, 0), rules: result(220, 0)},
	}
	var buf bytes.Buffer
	printTable(&buf, rows)
	out := buf.String()
	require.Regexp(t, `ratio ok +b +100\.00 +250\.00 +2\.50× +≤3\.0× +0  ok\n`, out)
	require.Regexp(t, `budget missed +b +100\.00 +220\.00 +2\.20× +\+50ns +0  MISSED \(\+60\.0 ns/call\)\n`, out)
	require.Contains(t, out, "\nTargets missed on this machine:\n  budget missed: 60.0 ns over per call > 50\n")
	require.NotContains(t, out, "Every target is met")

	buf.Reset()
	printTable(&buf, rows[:1])
	require.Contains(t, buf.String(), "\nEvery target is met on this machine.\n")
	require.NotContains(t, buf.String(), "MISSED")
}

// results.json carries each figure's measurements, its target of either
// kind and what it missed, under the field names readers parse.
func TestResultsJSONCarriesTargetsAndMisses(t *testing.T) {
	rows := []row{
		{figure: figure{Name: "ratio", Baseline: "b", Target: 2, MaxAllocs: 0}, base: result(100, 0), rules: result(300, 1)},
		{figure: figure{Name: "budget", Baseline: "b", OverNs: 50, MaxAllocs: -1}, base: result(100, 0), rules: result(140, 0)},
	}
	data, err := json.Marshal(newRunReport(rows, true, "cpu"))
	require.NoError(t, err)
	var got struct {
		Figures []map[string]any `json:"figures"`
	}
	require.NoError(t, json.Unmarshal(data, &got))
	require.Len(t, got.Figures, 2)
	ratio, budget := got.Figures[0], got.Figures[1]
	require.Equal(t, "ratio", ratio["name"])
	require.InDelta(t, 100, ratio["baseline_ns_per_op"], 1e-9)
	require.InDelta(t, 300, ratio["krules_ns_per_op"], 1e-9)
	require.InDelta(t, 3, ratio["ratio"], 1e-9)
	require.InDelta(t, 2, ratio["target_ratio"], 1e-9)
	require.InDelta(t, 1, ratio["krules_allocs_per_op"], 1e-9)
	require.Equal(t, []any{"ratio 3.00 > 2.00", "1 allocs/op > 0"}, ratio["missed"])
	require.NotContains(t, ratio, "target_ns_over_per_unit")

	require.NotContains(t, budget, "target_ratio")
	require.NotContains(t, budget, "missed")
	require.InDelta(t, 50, budget["target_ns_over_per_unit"], 1e-9)
	require.InDelta(t, 40, budget["ns_over_per_unit"], 1e-9)
	require.InDelta(t, 1, budget["units"], 1e-9, "a budget without units is per op")
}

// Each side keeps the median of its rounds, so one disturbed round moves
// neither.
func TestMedianKeepsTheMiddleRound(t *testing.T) {
	got := median([]testing.BenchmarkResult{result(500, 0), result(100, 0), result(300, 0), result(200, 0), result(9000, 0)})
	require.InDelta(t, 300, nsPerOp(got), 1e-9)
	require.Zero(t, nsPerOp(testing.BenchmarkResult{}), "a benchmark that did not run costs nothing")
}

// The chart draws a "+N ns" budget as the ratio it allows over this run's
// baseline, and a ratio target as itself; a figure with neither has no mark.
func TestChartTargetRatio(t *testing.T) {
	r, ok := figureResult{OverNsTarget: 50, Units: 2, BaselineNs: 100, Target: 9}.targetRatio()
	require.True(t, ok)
	require.InDelta(t, 2, r, 1e-9, "100 ns + 2 × 50 ns over a 100 ns baseline")
	r, ok = figureResult{OverNsTarget: 50, BaselineNs: 100}.targetRatio()
	require.True(t, ok)
	require.InDelta(t, 1.5, r, 1e-9, "a budget without units is per op")
	r, ok = figureResult{Target: 3, BaselineNs: 100}.targetRatio()
	require.True(t, ok)
	require.InDelta(t, 3, r, 1e-9)
	_, ok = figureResult{BaselineNs: 100}.targetRatio()
	require.False(t, ok)
}
