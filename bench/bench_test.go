package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
)

func TestMain(m *testing.M) { krulestest.VerifyTestMain(m) }

// BenchmarkFigures runs every figure and its baseline as sub-benchmarks, for
// benchstat:
//
//	go test -run '^$' -bench . -count 10 ./bench | benchstat -
func BenchmarkFigures(b *testing.B) {
	for _, f := range figures {
		b.Run(f.Name, func(b *testing.B) {
			b.Run("baseline", f.base)
			b.Run("krules", f.rules)
		})
	}
}

// TestQuickRun runs go run ./bench -quick once and checks what it printed
// and wrote, and what the strategy runs saw.
func TestQuickRun(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	status := run(&buf, config{quick: true, out: dir, strategies: "all", conditions: "all", workers: 4, zoneMiB: 16, seed: 1})
	out := buf.String()
	var rep runReport
	data, err := os.ReadFile(filepath.Join(dir, "results.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &rep))

	t.Run("prints the tables and writes every output", func(t *testing.T) {
		require.Zero(t, status, out)
		require.Contains(t, out, "Preallocation strategies in a notifier callback")
		require.Contains(t, out, "MightSleep outside sections")
		require.Contains(t, out, "BUG: sleeping function called from invalid context at ")
		require.Contains(t, out, "non_block: 1")
		require.Equal(t, cpuModel(), rep.CPUModel)
		require.True(t, strings.HasPrefix(out, "krules bench on "+rep.CPUModel+" ("), out[:min(len(out), 200)])

		require.Len(t, rep.Figures, len(figures))
		for _, f := range rep.Figures {
			require.Positive(t, f.BaselineNs, f.Name)
			require.Positive(t, f.KrulesNs, f.Name)
			require.InDelta(t, f.KrulesNs/f.BaselineNs, f.Ratio, 1e-9, f.Name)
		}
		require.Len(t, rep.Strategies, len(strategies)*len(conditions))
		require.NotNil(t, rep.Workload)
		for name, want := range map[string]string{
			"overhead-ratios.svg":  "MightSleep outside sections",
			"strategy-latency.svg": "3 mempool",
		} {
			svg, err := os.ReadFile(filepath.Join(dir, name))
			require.NoError(t, err)
			require.Contains(t, string(svg), "<svg", name)
			require.Contains(t, string(svg), want, name)
			require.Contains(t, out, "wrote "+filepath.Join(dir, name))
			require.Contains(t, string(svg), "@font-face", name+": the font travels with the chart")
			png, err := os.ReadFile(filepath.Join(dir, strings.TrimSuffix(name, ".svg")+".png"))
			require.NoError(t, err)
			require.True(t, bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")), name)
		}
	})

	t.Run("every strategy but the bug raises no report in any condition", func(t *testing.T) {
		for _, s := range strategies {
			if s.bug {
				continue
			}
			for _, r := range byStrategy(t, rep, s) {
				at := r.Strategy + " under " + r.Condition
				require.Empty(t, r.Err, at)
				require.Zero(t, r.Reports.total(), "%s: %v", at, r.Reports.ByKind)
				// A zero means something only if lockdep validated to the end.
				require.True(t, r.LockdepOnAfter, at)
				require.Positive(t, r.Modes[blockable].Invalidations, at)
				require.Zero(t, r.Modes[blockable].Errors, at)
				require.Equal(t, r.RegisterFailures, r.SourceErrors, at+": only registrations may fail")
			}
		}
	})

	t.Run("the bug raises lockdep and sleep-in-atomic reports", func(t *testing.T) {
		bugs := 0
		for _, s := range strategies {
			if !s.bug {
				continue
			}
			bugs++
			for _, r := range byStrategy(t, rep, s) {
				at := r.Strategy + " under " + r.Condition
				require.GreaterOrEqual(t, r.Modes[nonBlockable].Reports.Sleep, 1, at+": the OOM reaper's callbacks sleep")
				require.False(t, r.Modes[nonBlockable].Shown, at)
				if !lockdepCompiledIn {
					require.Zero(t, r.Reports.Lockdep, at+": lockdep is compiled out")
					continue
				}
				require.GreaterOrEqual(t, r.Reports.Lockdep, 1, at)
				require.GreaterOrEqual(t, r.Reports.ByKind["circular-dependency"], 1, at)
				require.False(t, r.LockdepOnAfter, at+": lockdep turns itself off after its report")
			}
		}
		require.Positive(t, bugs, "some strategy must be the bug")
	})

	// Against the raw observations, not the run's own verdict.
	t.Run("each condition holds when its run starts", func(t *testing.T) {
		for _, r := range rep.Strategies {
			c, at := r.Check, r.Strategy+" under "+r.Condition
			require.True(t, c.Held, at)
			require.Less(t, c.Min, c.Low, at)
			require.Less(t, c.Low, c.High, at)
			switch r.ConditionKey {
			case "plenty":
				require.Greater(t, c.Free, c.High, at)
				require.False(t, c.FaultsOn, at)
			case "nearlow":
				require.Greater(t, c.Free, c.Min, at)
				require.LessOrEqual(t, c.Free, c.High, at)
				require.True(t, c.KswapdRunning, at)
				require.Positive(t, c.PageOutRuns, at)
				require.Positive(t, c.Reclaimable, at)
				require.Positive(t, c.KswapdReclaimed, at+": kswapd kept reclaiming during the run")
				// kswapd stops once a round has taken free pages over high,
				// which may overshoot it by a reclaim batch, and the writer
				// that takes them back waits for a P behind the CPU-bound
				// workers (up to a 10 ms time slice on two CPUs): a -quick
				// run under krules_nolockdep failed 3 times in 20 with the
				// median 2-11 pages over high.
				require.LessOrEqual(t, c.FreeP50, c.High+gfp.SwapClusterMax, at+": and free pages stayed near low")
			case "belowmin":
				require.Less(t, c.Free, c.Min, at)
				require.Greater(t, c.Free, c.AtomicFloor, at)
				require.Zero(t, c.Reclaimable, at)
				require.Less(t, c.FreeP95, c.Min, at+": and stayed below min")
			case "faults":
				require.Greater(t, c.Free, c.High, at)
				require.True(t, c.FaultsOn, at)
				if s, _ := strategyByKey(r.StrategyKey); s.nowait {
					require.Positive(t, c.FaultsInjected, at)
				}
			default:
				t.Fatalf("unknown condition %q", r.ConditionKey)
			}
		}
	})
}

// byStrategy returns a run's results for one strategy, one per condition.
func byStrategy(t *testing.T, rep runReport, s strategy) []strategyResult {
	var out []strategyResult
	for _, r := range rep.Strategies {
		if r.StrategyKey == s.key {
			out = append(out, r)
		}
	}
	require.Len(t, out, len(conditions))
	return out
}

// BenchmarkStrategies runs the strategy workload as benchmarks, one per
// strategy and memory condition: an op is one blockable change (an unmap
// or an mprotect), with the OOM reaper running alongside. Besides ns/op it
// reports the callbacks' latency quantiles and the reports raised:
//
//	go test -run '^$' -bench Strategies -count 10 ./bench | benchstat -
func BenchmarkStrategies(b *testing.B) {
	for _, s := range strategies {
		for _, c := range conditions {
			b.Run(s.key+"/"+c.key, func(b *testing.B) {
				cfg := config{workers: 4, zoneMiB: 16, seed: 1}.workload()
				cfg.started, cfg.stopped = b.ResetTimer, b.StopTimer
				res, err := runStrategy(cfg, s, c, int64(b.N))
				if err != nil {
					b.Fatal(err)
				}
				blk, nb := res.Modes[blockable], res.Modes[nonBlockable]
				if blk.Invalidations > 0 {
					b.ReportMetric(blk.P50us*1e3, "p50-ns")
					b.ReportMetric(blk.P99us*1e3, "p99-ns")
				}
				if nb.Shown && nb.Invalidations > 0 {
					b.ReportMetric(nb.P50us*1e3, "nonblock-p50-ns")
					b.ReportMetric(nb.P99us*1e3, "nonblock-p99-ns")
				}
				b.ReportMetric(float64(res.Reports.total()), "reports")
			})
		}
	}
}

// Every strategy is listed once, under its own key, numbered in order, with
// what the report needs of it.
func TestStrategiesAreOneList(t *testing.T) {
	keys := map[string]bool{}
	bugs := 0
	for i, s := range strategies {
		require.Equal(t, i+1, s.id, s.key)
		require.False(t, keys[s.key], "key %q twice", s.key)
		keys[s.key] = true
		require.NotEmpty(t, s.label, s.key)
		require.NotEmpty(t, s.lesson, s.key)
		require.NotNil(t, s.probe, s.key)
		got, ok := strategyByKey(s.key)
		require.True(t, ok)
		require.Equal(t, s.name(), got.name())
		if s.bug {
			bugs++
		}
	}
	require.Equal(t, 1, bugs, "the report shows one bug against the fixes")
	ss, err := parseStrategies("2," + strategies[0].key)
	require.NoError(t, err)
	require.Equal(t, []string{strategies[1].key, strategies[0].key}, []string{ss[0].key, ss[1].key})
}

// -run picks figures only: with neither -strategies nor -conditions given
// no strategy runs; either one given runs strategies, the other flag left
// out meaning all; without -run, all run.
func TestRunAloneRunsNoStrategies(t *testing.T) {
	keys := func(ss []strategy) (k []string) {
		for _, s := range ss {
			k = append(k, s.key)
		}
		return k
	}
	ss, cs, err := config{only: "Mutex"}.strategyRuns()
	require.NoError(t, err)
	require.Empty(t, ss)
	require.Empty(t, cs)

	ss, cs, err = config{only: "Mutex", strategies: "2"}.strategyRuns()
	require.NoError(t, err)
	require.Equal(t, []string{strategies[1].key}, keys(ss))
	require.Len(t, cs, len(conditions))

	ss, cs, err = config{only: "Mutex", conditions: conditions[0].key}.strategyRuns()
	require.NoError(t, err)
	require.Len(t, ss, len(strategies))
	require.Equal(t, []conditionInfo{conditions[0]}, cs)

	ss, cs, err = config{}.strategyRuns()
	require.NoError(t, err)
	require.Equal(t, keys(strategies), keys(ss))
	require.Len(t, cs, len(conditions))

	_, _, err = config{only: "Mutex", strategies: "nosuch"}.strategyRuns()
	require.ErrorContains(t, err, "-strategies: unknown \"nosuch\"")
}

func TestRatioTicksLabelALogAxis(t *testing.T) {
	var labels []string
	for _, tk := range (ratioTicks{}).Ticks(0.03, 25) {
		labels = append(labels, tk.Label)
	}
	require.Equal(t, []string{"0.05×", "0.1×", "0.2×", "0.5×", "1×", "2×", "5×", "10×", "20×"}, labels)
	f := figureResult{BaselineNs: 10, OverNsTarget: 50, Units: 2}
	r, ok := f.targetRatio()
	require.True(t, ok)
	require.InDelta(t, 11.0, r, 1e-9, "+50 ns a call over 2 calls of a 10 ns baseline")
}
