package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/krules/krules/gfp"
)

// The strategy report: every chosen strategy under every chosen memory
// condition, printed as one section per condition.

// workloadReport describes the workload for the JSON output.
type workloadReport struct {
	Workers       int     `json:"workers"`
	AddressSpaces int     `json:"address_spaces"`
	RunSeconds    float64 `json:"seconds_per_run"`
	ZoneBytes     int     `json:"zone_bytes"`
	ZonePages     int     `json:"zone_pages"`
	Min           int64   `json:"min"`
	Low           int64   `json:"low"`
	High          int64   `json:"high"`
	MempoolSize   int     `json:"mempool_size"`
	ChunkBytes    int     `json:"max_chunk_bytes"`
	StackBytes    int     `json:"stack_buffer_bytes"`
	RangePages    [2]int  `json:"range_pages"`
	Source        string  `json:"source"`
}

// runStrategies runs every strategy under every condition, conditions
// outermost, with a progress line on standard error.
func runStrategies(cfg workloadConfig, ss []strategy, cs []conditionInfo) []strategyResult {
	var results []strategyResult
	total, i := len(ss)*len(cs), 0
	pr := newProgress()
	for _, c := range cs {
		for _, s := range ss {
			i++
			pr.step("[%d/%d] strategy %s under %s", i, total, s.name(), c.name)
			res, err := runStrategy(cfg, s, c, 0)
			if err != nil {
				res.Err = err.Error()
			}
			results = append(results, res)
		}
	}
	pr.done()
	return results
}

// strategyProblems lists what must not happen: a condition that did not
// hold, a run that failed, a report from a strategy that is not the bug or
// lockdep off at the end of its runs, and the bug going unreported.
func strategyProblems(results []strategyResult) []string {
	var out []string
	for _, r := range results {
		at := fmt.Sprintf("%s under %s", r.Strategy, r.Condition)
		if r.Err != "" {
			out = append(out, fmt.Sprintf("%s: %s", at, r.Err))
		}
		if s, _ := strategyByKey(r.StrategyKey); s.bug {
			// The bug must be caught: lockdep proves the deadlock (unless
			// compiled out), and the reaper's callbacks sleep in a
			// non-blocking section.
			if lockdepCompiledIn && r.Reports.Lockdep == 0 || r.Modes[nonBlockable].Reports.Sleep == 0 {
				out = append(out, fmt.Sprintf("%s: the bug went unreported (%d lockdep, %d sleep-in-atomic in the reaper)",
					at, r.Reports.Lockdep, r.Modes[nonBlockable].Reports.Sleep))
			}
			continue
		}
		if n := r.Reports.total(); n > 0 {
			out = append(out, fmt.Sprintf("%s raised %d reports: %s", at, n, kindList(r.Reports.ByKind)))
		}
		if !r.LockdepOnAfter {
			out = append(out, fmt.Sprintf("%s: lockdep was off at the end of the run", at))
		}
	}
	return out
}

func kindList(m map[string]int) string {
	var parts []string
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%d %s", n, k))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// printStrategies prints the workload, then one section per condition:
// how it was set up and what was seen, and a row per strategy and mode.
func printStrategies(w io.Writer, wl workloadReport, results []strategyResult) {
	fmt.Fprintln(w, "Preallocation strategies in a notifier callback")
	fmt.Fprintln(w)
	fmt.Fprint(w, wrap(fmt.Sprintf("A driver zaps its device's translation entries for every invalidated range "+
		"(%d-%d pages), building a buffer of 8 bytes a page, at most %d KiB a pass, the strategy's way. "+
		"%d goroutines unmap and mprotect ranges of %d address spaces (blockable); an OOM reaper reaps "+
		"fresh victims (non-blockable). Invalidations come from %s. Zone Normal: %d MiB, watermarks min %d, "+
		"low %d, high %d pages. %s a run; mempool N = %d.",
		wl.RangePages[0], wl.RangePages[1], wl.ChunkBytes/1024, wl.Workers, wl.AddressSpaces, wl.Source,
		wl.ZoneBytes>>20, wl.Min, wl.Low, wl.High, time.Duration(wl.RunSeconds*float64(time.Second)), wl.MempoolSize), 100, ""))

	for _, c := range conditions {
		var rows []strategyResult
		for _, r := range results {
			if r.ConditionKey == c.key {
				rows = append(rows, r)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintln(w)
		fmt.Fprint(w, wrap(c.name+": "+c.setup+".", 100, ""))
		fmt.Fprint(w, wrap("at the start of each run: "+checkSummary(rows), 100, "  "))
		if c.id == condNearLow {
			fmt.Fprintf(w, "  during the runs: free pages p5-p95 %d-%d; kswapd reclaimed %d pages a run (median)\n",
				medianOf(rows, func(r strategyResult) int64 { return r.Check.FreeP5 }),
				medianOf(rows, func(r strategyResult) int64 { return r.Check.FreeP95 }),
				medianOf(rows, func(r strategyResult) int64 { return r.Check.KswapdReclaimed }))
		} else {
			fmt.Fprintf(w, "  during the runs: free pages p5-p95 %d-%d (median run)\n",
				medianOf(rows, func(r strategyResult) int64 { return r.Check.FreeP5 }),
				medianOf(rows, func(r strategyResult) int64 { return r.Check.FreeP95 }))
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  %-19s %-8s %8s %8s %9s %9s %6s %6s %8s %6s %7s %7s %7s %7s %5s %6s\n",
			"strategy", "mode", "p50 µs", "p99 µs", "max µs", "inv/s", "passes", "fail", "fallback", "EAGAIN",
			"rsv KiB", "<min", "retries", "lockdep", "sleep", "other")
		for _, r := range rows {
			for md := range nModes {
				m := r.Modes[md]
				name := ""
				runCols := ""
				if md == blockable {
					name = r.Strategy
					runCols = fmt.Sprintf(" %7d %7d %7d %7d %5d %6d", r.ReserveBytes/1024, r.ZoneReserveDips, r.ReapRetries,
						r.Reports.Lockdep, r.Reports.Sleep, r.Reports.Other)
				}
				if !m.Shown {
					fmt.Fprintf(w, "  %-19s %-8s %s%s\n", name, m.Mode, "(not measured: every call is the bug)", runCols)
					continue
				}
				fmt.Fprintf(w, "  %-19s %-8s %8s %8s %9s %9s %6s %6d %8s %6d%s\n",
					name, m.Mode, usCol(m, m.P50us), usCol(m, m.P99us), usCol(m, m.MaxUs),
					strconv.FormatFloat(m.PerSecond, 'f', 0, 64), passesCol(m), m.AllocFailures+regFails(r, md),
					fallbackCol(r, m), m.EAGAIN, runCols)
			}
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Columns: latency of the callbacks that zapped their range; inv/s, those per second; passes,")
	fmt.Fprintln(w, "device commands per invalidation; fail, allocations the driver saw fail (strategy 4: buffers")
	fmt.Fprintln(w, "refused when a victim's notifier registered); fallback, strategy 2's smaller chunk or emergency")
	fmt.Fprintln(w, "page, strategy 3's buffers from the reserve, strategy 6's waits for a GPU job's fence; EAGAIN,")
	fmt.Fprintln(w, "non-blockable callbacks that told the reaper to retry; rsv KiB, memory the strategy keeps")
	fmt.Fprintln(w, "allocated; <min, allocations that left the zone below its min watermark, eating the reserve;")
	fmt.Fprintln(w, "retries, the OOM reaper's.")
	fmt.Fprintln(w, "Reports are counted, not printed (krules.Collect), one per occurrence. Lockdep reports the")
	fmt.Fprintln(w, "first dependency cycle it proves and then turns itself off (debug_locks = 0), as the kernel")
	fmt.Fprintln(w, "does; the validator is reset before every run, so a lockdep count of 1 means the run proved")
	fmt.Fprintln(w, "a deadlock, not how often it would happen, and a 0 counts only because validation was")
	fmt.Fprintln(w, "still on when the run ended.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "What each strategy teaches:")
	for _, s := range strategies {
		text := wrap(s.lesson, 97, "   ")
		fmt.Fprint(w, strconv.Itoa(s.id)+"."+text[2:])
	}
}

func usCol(m modeResult, v float64) string {
	if m.Invalidations == 0 {
		return "-"
	}
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func passesCol(m modeResult) string {
	if m.Invalidations == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(m.Passes)/float64(m.Invalidations), 'f', 1, 64)
}

func regFails(r strategyResult, md mode) int64 {
	if md == nonBlockable {
		return r.RegisterFailures
	}
	return 0
}

func fallbackCol(r strategyResult, m modeResult) string {
	if s, _ := strategyByKey(r.StrategyKey); s.fallback != nil {
		return strconv.FormatInt(s.fallback(m), 10)
	}
	return "-"
}

// checkSummary says what was seen when the runs started: the first run's
// observation, and how many runs the condition held for.
func checkSummary(rows []strategyResult) string {
	held := 0
	for _, r := range rows {
		if r.Check.Held {
			held++
		}
	}
	mark := "✓"
	if held < len(rows) {
		mark = fmt.Sprintf("✗ held in %d of %d runs", held, len(rows))
	}
	return fmt.Sprintf("%s %s", rows[0].Check.Why, mark)
}

func medianOf(rows []strategyResult, f func(strategyResult) int64) int64 {
	v := make([]int64, len(rows))
	for i, r := range rows {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// parseStrategies reads -strategies: "all" (or "", the flag not given),
// "none", or a comma list of keys or numbers.
func parseStrategies(s string) ([]strategy, error) {
	return parseList(s, strategies, func(x strategy) (string, int) { return x.key, x.id })
}

func parseConditions(s string) ([]conditionInfo, error) {
	return parseList(s, conditions, func(x conditionInfo) (string, int) { return x.key, int(x.id) })
}

func parseList[T any](s string, all []T, id func(T) (string, int)) ([]T, error) {
	switch s {
	case "all", "":
		return all, nil
	case "none":
		return nil, nil
	}
	var out []T
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		found := false
		for _, x := range all {
			key, n := id(x)
			if f == key || f == strconv.Itoa(n) {
				out = append(out, x)
				found = true
			}
		}
		if !found {
			var keys []string
			for _, x := range all {
				k, _ := id(x)
				keys = append(keys, k)
			}
			return nil, fmt.Errorf("unknown %q (want all, none, or some of %s)", f, strings.Join(keys, ","))
		}
	}
	return out, nil
}

// describeWorkload says what the runs of cfg do, with the watermarks of
// a zone of its size.
func describeWorkload(cfg workloadConfig) workloadReport {
	wl := workloadReport{
		Workers: cfg.workers, AddressSpaces: cfg.spaces(), RunSeconds: cfg.duration.Seconds(),
		ZoneBytes: cfg.zoneSize, ZonePages: cfg.zoneSize / gfp.PageSize, MempoolSize: cfg.poolSize(),
		ChunkBytes: chunkBytes, StackBytes: stackBufBytes, RangePages: [2]int{minRangePages, maxRangePages},
		Source: sourceName,
	}
	if z, err := gfp.NewZone(cfg.zoneSize); err == nil {
		m := z.Watermarks()
		wl.Min, wl.Low, wl.High = m.Min, m.Low, m.High
		z.Close()
	}
	return wl
}

// wrap breaks text into lines of at most width columns, each starting
// with indent.
func wrap(text string, width int, indent string) string {
	var b strings.Builder
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && len([]rune(line))+1+len([]rune(word)) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
	return b.String()
}
