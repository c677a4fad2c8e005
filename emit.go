package krules

import (
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/krules/krules/internal/splat"
	"github.com/krules/krules/internal/task"
)

// Delivery of reports. By default a report is printed to standard error and
// the program continues, like the kernel's WARN(). SetPanicOnReport mirrors
// panic_on_warn; OnReport adds a hook. A test that called Check or Record
// claims the reports raised during it: they go to the test instead.
//
// Like the kernel, sleep-in-atomic reports are limited to one a second and
// allocation-failure reports to one every ten seconds; the others are counted
// and the next printed report says how many were suppressed. Claimed reports
// skip these limits, so tests see every one. bad_page's burst (package gfp)
// is applied before a report is raised, so it holds for claims too.

var sinks = struct {
	mu            sync.Mutex
	out           io.Writer
	panicOnReport bool
	hooks         []*func(*Report)
	counts        [kindCount]int
	suppressed    int
	limits        map[Kind]*rateLimit
}{out: os.Stderr}

// rateLimit is burst reports per interval: the kernel's ___ratelimit,
// whose next interval begins once more than interval has passed
// (time_is_before_jiffies(begin + interval)), or, loose, a prev_jiffy check
// (__might_resched's, __cant_sleep's), which lets a report through once
// interval has passed.
type rateLimit struct {
	interval time.Duration
	burst    int
	loose    bool
	begin    time.Time
	printed  int
	missed   int
}

func (l *rateLimit) allow(now time.Time) bool {
	if d := now.Sub(l.begin); l.begin.IsZero() || d > l.interval || l.loose && d == l.interval {
		l.begin, l.printed = now, 0
	}
	if l.printed < l.burst {
		l.printed++
		return true
	}
	l.missed++
	return false
}

func newLimits() map[Kind]*rateLimit {
	return map[Kind]*rateLimit{
		SleepInAtomic: {interval: time.Second, burst: 1, loose: true}, // __might_resched's prev_jiffy
		AssumeAtomic:  {interval: time.Second, burst: 1, loose: true}, // __cant_sleep's prev_jiffy
		AllocFailure:  {interval: 10 * time.Second, burst: 1},         // warn_alloc's nopage_rs
	}
}

func init() {
	sinks.limits = newLimits()
	warnSlowGoroutineIDs()
}

// warnSlowGoroutineIDs reports, once a process, that goroutine ids come from
// runtime.Stack because the fast path failed its start-up check.
func warnSlowGoroutineIDs() {
	if slow, why := task.SlowPath(); slow {
		Emit(Warn(GoroutineID, "krules: goroutine ids fall back to runtime.Stack (about 1.5µs a lookup): "+why, 0))
	}
}

// Emit delivers a report: to the test that claimed it, or else to the
// output, the hooks and the panic policy. Packages that enforce a rule call
// it once the state they guard is consistent again, since the panic policy
// unwinds from here.
func Emit(r *Report) {
	splat.AddTaint(r.taints())
	claimers := claimsFor(r)
	s := &sinks
	s.mu.Lock()
	s.counts[r.Kind]++
	if len(claimers) == 0 {
		if l := s.limits[r.Kind]; l != nil {
			if !l.allow(time.Now()) {
				s.suppressed++
				s.mu.Unlock()
				return
			}
			r.Suppressed, l.missed = l.missed, 0
			// A report limited where it is raised (bad_page's) says
			// so in its own text; this line is for Emit's limits.
			if r.Suppressed > 0 {
				fmt.Fprintf(s.out, "krules: %d %s reports suppressed\n", r.Suppressed, r.Kind)
			}
		}
		io.WriteString(s.out, r.Text)
	}
	hooks := slices.Clone(s.hooks)
	panicking := s.panicOnReport && len(claimers) == 0
	s.mu.Unlock()

	for _, c := range claimers {
		c.take(r)
	}
	if len(claimers) == 0 {
		for _, h := range hooks {
			(*h)(r)
		}
	}
	if panicking {
		panic(r)
	}
}

// Logf prints an informational line to the report output, the way the
// kernel's pr_info does ("oom_reaper: reaped process ...").
func Logf(format string, args ...any) {
	sinks.mu.Lock()
	defer sinks.mu.Unlock()
	fmt.Fprintf(sinks.out, format, args...)
	if len(format) == 0 || format[len(format)-1] != '\n' {
		io.WriteString(sinks.out, "\n")
	}
}

// SetOutput sets where unclaimed reports are printed (standard error by
// default; nil discards them) and returns the previous writer.
func SetOutput(w io.Writer) (previous io.Writer) {
	if w == nil {
		w = io.Discard
	}
	sinks.mu.Lock()
	defer sinks.mu.Unlock()
	previous, sinks.out = sinks.out, w
	return previous
}

// SetPanicOnReport chooses the panic policy, the kernel's panic_on_warn: an
// unclaimed report panics, with the *Report as the panic value, after it is
// printed. It returns the previous setting.
func SetPanicOnReport(on bool) (previous bool) {
	sinks.mu.Lock()
	defer sinks.mu.Unlock()
	previous, sinks.panicOnReport = sinks.panicOnReport, on
	return previous
}

// OnReport adds a hook that sees every printed report (after rate limiting,
// before the panic policy), and returns a function that removes it. Hooks
// run on the goroutine that raised the report and must not block.
func OnReport(fn func(*Report)) (remove func()) {
	h := &fn
	sinks.mu.Lock()
	sinks.hooks = append(sinks.hooks, h)
	sinks.mu.Unlock()
	return func() {
		sinks.mu.Lock()
		defer sinks.mu.Unlock()
		for i, x := range sinks.hooks {
			if x == h {
				sinks.hooks = append(sinks.hooks[:i:i], sinks.hooks[i+1:]...)
				return
			}
		}
	}
}

// Stats counts reports since start-up or the last Reset.
type Stats struct {
	// Reports counts every report raised, by kind, printed or not.
	Reports map[Kind]int
	// Suppressed counts unclaimed reports Emit's rate limits kept quiet;
	// a report its package keeps quiet (a bad page past gfp's burst) is
	// never emitted, and counted nowhere here.
	Suppressed int
	// Tainted says whether a report tainted the process: a WARN, a
	// might_sleep or scheduling BUG, a bad page or slab object, a BUG_ON. Lockdep's
	// reports, allocation failures and hung tasks leave it untainted, as
	// in the kernel, whose reports then still print "Not tainted".
	Tainted bool
}

// ReportStats returns the report counters.
func ReportStats() Stats {
	sinks.mu.Lock()
	defer sinks.mu.Unlock()
	st := Stats{Reports: map[Kind]int{}, Suppressed: sinks.suppressed, Tainted: splat.Tainted() != 0}
	for k, n := range sinks.counts {
		if n > 0 {
			st.Reports[Kind(k)] = n
		}
	}
	return st
}

// Reset clears the counters, the rate limits and the taint; tests use it to
// start from a known state. Output, policy and hooks are left alone.
func Reset() {
	sinks.mu.Lock()
	defer sinks.mu.Unlock()
	sinks.counts = [kindCount]int{}
	sinks.suppressed = 0
	sinks.limits = newLimits()
	splat.ResetTaint()
}
