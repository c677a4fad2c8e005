// Command bench is the report krules users run first:
//
//	go run ./bench
//
// It runs a driver's MMU-notifier callbacks, fed by real mmnotifier
// invalidations, with several ways of getting their scratch buffer under four
// memory conditions, and prints what each costs and what the rules report
// (the strategy report); then it prints the price of the rules (each krules
// hot path beside its Go baseline, measured in the same run, with the
// target ratio it must meet) and demonstrates what the rules
// catch. The same data goes to results.json and SVG charts in -out.
package main

import (
	"cmp"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/nonblock"
)

func main() {
	var cfg config
	flag.BoolVar(&cfg.quick, "quick", false, "measure briefly (CI smoke run, under 20 s)")
	flag.StringVar(&cfg.only, "run", "", "only figures whose name contains this, and no strategy runs unless -strategies or -conditions is given")
	flag.StringVar(&cfg.out, "out", "bench-out", "folder for results.json and the SVG charts (empty: write none)")
	flag.StringVar(&cfg.strategies, "strategies", "", fmt.Sprintf("strategies to run: all, none, or a comma list of %s (or 1-%d); unset, all, or none with -run", strategyKeys(), len(strategies)))
	flag.StringVar(&cfg.conditions, "conditions", "", "memory conditions: all, none, or a comma list of plenty,nearlow,belowmin,faults; unset, all, or none with -run")
	flag.DurationVar(&cfg.duration, "duration", 0, "length of each strategy run (default 1.5s, 150ms with -quick)")
	flag.IntVar(&cfg.workers, "workers", 4, "goroutines making blockable invalidations (two per address space)")
	flag.IntVar(&cfg.zoneMiB, "zone", 16, "size of each run's zone, in MiB")
	flag.IntVar(&cfg.reserve, "reserve", 0, "strategy 3's mempool size N (default: one per goroutine that invalidates)")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed for ranges and fault injection")
	flag.Parse()
	os.Exit(run(os.Stdout, cfg))
}

type config struct {
	quick      bool
	only       string
	out        string
	strategies string // "" when the flag is not given
	conditions string // "" when the flag is not given
	duration   time.Duration
	workers    int
	zoneMiB    int
	reserve    int
	seed       uint64
}

// workload returns the strategy workload the flags ask for.
func (cfg config) workload() workloadConfig {
	wl := workloadConfig{
		workers: max(cfg.workers, 1), duration: cfg.duration, zoneSize: max(cfg.zoneMiB, 1) << 20,
		reserve: cfg.reserve, seed: cfg.seed, newSource: newSource,
	}
	if wl.duration <= 0 {
		wl.duration = 1500 * time.Millisecond
		if cfg.quick {
			wl.duration = 150 * time.Millisecond
		}
	}
	return wl
}

// strategyRuns returns the strategies and conditions to run: those the
// flags name, every one for a flag not given, but none at all when -run
// picks figures and neither flag is given, since a user who asks for some
// figures expects only those.
func (cfg config) strategyRuns() ([]strategy, []conditionInfo, error) {
	if cfg.only != "" && cfg.strategies == "" && cfg.conditions == "" {
		return nil, nil, nil
	}
	ss, err := parseStrategies(cfg.strategies)
	if err != nil {
		return nil, nil, fmt.Errorf("-strategies: %w", err)
	}
	cs, err := parseConditions(cfg.conditions)
	if err != nil {
		return nil, nil, fmt.Errorf("-conditions: %w", err)
	}
	return ss, cs, nil
}

func run(w io.Writer, cfg config) int {
	quick, only := cfg.quick, cfg.only
	ss, cs, err := cfg.strategyRuns()
	if err != nil {
		fmt.Fprintln(w, "bench:", err)
		return 2
	}
	testing.Init()
	benchtime, rounds := "150ms", 5
	if quick {
		benchtime, rounds = "20ms", 1
	}
	if err := flag.Set("test.benchtime", benchtime); err != nil {
		fmt.Fprintln(w, "bench:", err)
		return 2
	}

	status := 0
	cpu := cpuModel()
	fmt.Fprintf(w, "krules bench on %s (%d CPUs), %s %s/%s\n\n", cpu, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	rep := newRunReport(nil, quick, cpu)
	if len(ss) > 0 && len(cs) > 0 {
		wcfg := cfg.workload()
		results := runStrategies(wcfg, ss, cs)
		wl := describeWorkload(wcfg)
		printStrategies(w, wl, results)
		if problems := strategyProblems(results); len(problems) > 0 {
			fmt.Fprintln(w, "\nWhat went wrong:")
			for _, p := range problems {
				fmt.Fprintln(w, "  "+p)
			}
			status = 1
		} else {
			fmt.Fprintln(w, "\nEvery condition held when its run started, and every strategy but the bug raised no report.")
		}
		rep.Workload, rep.Strategies = &wl, results
		fmt.Fprintln(w)
		// The runs leave garbage behind (address spaces, page tables);
		// collect it now rather than during the figures.
		runtime.GC()
	}

	fmt.Fprintln(w, "krules: the price of the rules (uncontended and on one goroutine unless a figure says otherwise)")
	fmt.Fprintln(w)
	rows := measure(only, rounds)
	printTable(w, rows)
	rep.Figures = newRunReport(rows, quick, cpu).Figures
	fmt.Fprintln(w)
	demonstrate(w)
	if cfg.out != "" {
		files, err := writeOutputs(cfg.out, rep)
		fmt.Fprintln(w)
		for _, f := range files {
			fmt.Fprintln(w, "wrote", f)
		}
		if err != nil {
			fmt.Fprintln(w, "bench:", err)
			return 1
		}
	}
	return status
}

type row struct {
	figure
	base, rules testing.BenchmarkResult
}

func (r row) ratio() float64 {
	return nsPerOp(r.rules) / nsPerOp(r.base)
}

// overPerUnit is what krules costs over the baseline per unit of a
// budgeted figure.
func (r row) overPerUnit() float64 {
	return (nsPerOp(r.rules) - nsPerOp(r.base)) / float64(max(r.Units, 1))
}

func (r row) missed() []string {
	var why []string
	if r.Target > 0 && r.ratio() > r.Target {
		why = append(why, fmt.Sprintf("ratio %.2f > %.2f", r.ratio(), r.Target))
	}
	if r.OverNs > 0 && r.overPerUnit() > r.OverNs {
		why = append(why, fmt.Sprintf("%.1f ns over per %s > %.0f", r.overPerUnit(), r.Unit, r.OverNs))
	}
	if r.MaxAllocs >= 0 && r.rules.AllocsPerOp() > r.MaxAllocs {
		why = append(why, fmt.Sprintf("%d allocs/op > %d", r.rules.AllocsPerOp(), r.MaxAllocs))
	}
	return why
}

// maxWaits are a contended figure's longest sampled waits, baseline and
// krules, in ns; ok is false for a figure that does not sample them.
func (r row) maxWaits() (base, rules float64, ok bool) {
	base, okb := r.base.Extra[maxWaitMetric]
	rules, okr := r.rules.Extra[maxWaitMetric]
	return base, rules, okb && okr
}

// fmtWait prints a wait in ns at a readable precision: "850µs", "12ms".
func fmtWait(ns float64) string {
	return time.Duration(ns).Round(time.Microsecond).String()
}

func nsPerOp(r testing.BenchmarkResult) float64 {
	if r.N == 0 {
		return 0
	}
	return float64(r.T.Nanoseconds()) / float64(r.N)
}

// measure runs each figure's baseline and krules side alternately, rounds
// times, and keeps the median of each side: a burst of load elsewhere on the
// machine then moves one sample, not the ratio.
func measure(only string, rounds int) []row {
	var rows []row
	pr := newProgress()
	for i, f := range figures {
		if only != "" && !strings.Contains(f.Name, only) {
			continue
		}
		pr.step("[%d/%d] measuring %s", i+1, len(figures), f.Name)
		var base, rules []testing.BenchmarkResult
		for range rounds {
			base = append(base, testing.Benchmark(f.base))
			rules = append(rules, testing.Benchmark(f.rules))
		}
		rows = append(rows, row{figure: f, base: median(base), rules: median(rules)})
	}
	pr.done()
	return rows
}

// median returns the result with the median time per operation.
func median(rs []testing.BenchmarkResult) testing.BenchmarkResult {
	slices.SortFunc(rs, func(a, b testing.BenchmarkResult) int { return cmp.Compare(nsPerOp(a), nsPerOp(b)) })
	return rs[len(rs)/2]
}

func printTable(w io.Writer, rows []row) {
	fmt.Fprintf(w, "%-32s %-14s %10s %10s %7s %7s %7s  %s\n", "operation", "baseline", "base ns", "krules ns", "ratio", "target", "allocs", "verdict")
	var missed []string
	for _, r := range rows {
		target := "-"
		if r.Target > 0 {
			target = fmt.Sprintf("≤%.1f×", r.Target)
		}
		if r.OverNs > 0 {
			target = fmt.Sprintf("+%.0fns", r.OverNs)
		}
		verdict := "ok"
		if why := r.missed(); len(why) > 0 {
			verdict = "MISSED"
			missed = append(missed, fmt.Sprintf("%s: %s", r.Name, strings.Join(why, ", ")))
		}
		if r.OverNs > 0 {
			verdict += fmt.Sprintf(" (+%.1f ns/%s)", r.overPerUnit(), r.Unit)
		}
		if base, rules, ok := r.maxWaits(); ok {
			verdict += fmt.Sprintf(" (max wait %s; baseline %s)", fmtWait(rules), fmtWait(base))
		}
		fmt.Fprintf(w, "%-32s %-14s %10.2f %10.2f %6.2f× %7s %7d  %s\n",
			r.Name, r.Baseline, nsPerOp(r.base), nsPerOp(r.rules), r.ratio(), target, r.rules.AllocsPerOp(), verdict)
	}
	if len(missed) == 0 {
		fmt.Fprintln(w, "\nEvery target is met on this machine.")
		return
	}
	fmt.Fprintln(w, "\nTargets missed on this machine:")
	for _, m := range missed {
		fmt.Fprintln(w, "  "+m)
	}
}

// demonstrate runs the scenarios the rules exist for and prints the
// reports they raise.
func demonstrate(w io.Writer) {
	fmt.Fprintln(w, "What the rules catch")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "1. A non-blockable notifier callback (OOM-reaper style) that sleeps:")
	reports := krules.Collect(func() {
		krules.SetName("oom_reaper")
		defer krules.SetName("")
		nonblock.Start()
		defer nonblock.End()
		nonblock.Sleep(time.Millisecond)
	})
	for _, r := range reports {
		fmt.Fprintln(w)
		fmt.Fprint(w, indent(r.Text))
	}
	demonstrateTraceCheck(w)
	demonstrateGFP(w)
	demonstrateMempool(w)
	demonstrateMMNotifier(w)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
