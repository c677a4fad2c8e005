package gfp

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/splat"
	"github.com/krules/krules/internal/stack"
)

// FaultAttr configures fault injection (struct fault_attr with the
// fail_page_alloc / failslab knobs). Start from NewFaultAttr, which sets
// the kernel's defaults, change the fields, and install it with
// Zone.InjectPageAllocFaults or Zone.InjectSlabFaults. Its fields must not
// change once installed.
type FaultAttr struct {
	// Probability is the chance of failure in percent (0 disables).
	Probability int
	// Interval fails only every Interval-th call that reaches that check.
	Interval int
	// Times is the maximum number of failures; -1 means no limit.
	Times int
	// Space is a size budget (bytes for slab, pages for page allocation)
	// consumed before any failure is injected.
	Space int
	// Verbose: 0 silent, 1 one line per failure, 2 the line and the stack.
	Verbose int
	// VerboseInterval and VerboseBurst rate-limit the printouts (0: none).
	VerboseInterval time.Duration
	VerboseBurst    int
	// StackDepth is how many frames outside krules the stack filter
	// inspects (at most 32).
	StackDepth int
	// Require, when non-empty, limits failures to calls with one of these
	// functions on the stack; Reject excludes calls with any of them. An
	// entry is a full function name ("example.com/drv.(*Dev).Probe"), or a
	// prefix followed by "*" ("example.com/drv.*").
	Require, Reject []string
	// IgnoreGFPWait (ignore-gfp-wait, default true) never fails calls that
	// may direct-reclaim.
	IgnoreGFPWait bool
	// IgnoreGFPHighmem (ignore-gfp-highmem, default true; page allocation
	// only) never fails HighMem calls.
	IgnoreGFPHighmem bool
	// MinOrder (min-order, default 1; page allocation only) never fails
	// smaller orders.
	MinOrder int
	// Seed makes the random choices repeat exactly from run to run.
	Seed uint64

	mu     sync.Mutex
	name   string
	rng    *rand.Rand
	count  int
	times  int
	space  int
	logged []time.Time
	fails  int
}

// NewFaultAttr returns a FaultAttr with FAULT_ATTR_INITIALIZER's defaults
// (interval 1, times 1, verbose 2, stack depth 32) and the page-alloc
// knobs' (ignore-gfp-wait and ignore-gfp-highmem set, min-order 1).
func NewFaultAttr(probability int, seed uint64) *FaultAttr {
	return &FaultAttr{
		Probability:      probability,
		Interval:         1,
		Times:            1,
		Verbose:          2,
		StackDepth:       32,
		IgnoreGFPWait:    true,
		IgnoreGFPHighmem: true,
		MinOrder:         1,
		Seed:             seed,
	}
}

// Failures returns how many failures the attribute has injected.
func (a *FaultAttr) Failures() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fails
}

// arm copies the budgets out of the public fields when it is installed.
func (a *FaultAttr) arm(name string) *FaultAttr {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.name = name
	a.rng = rand.New(rand.NewPCG(a.Seed, a.Seed^0x9e3779b97f4a7c15))
	a.count, a.times, a.space, a.fails, a.logged = 0, a.Times, a.Space, 0, nil
	return a
}

// InjectPageAllocFaults installs attr as the zone's fail_page_alloc (nil
// turns it off) and returns the previous one.
func (z *Zone) InjectPageAllocFaults(attr *FaultAttr) *FaultAttr {
	return z.failPage.Swap(attr.arm("fail_page_alloc"))
}

// InjectSlabFaults installs attr as the zone's failslab, consulted by
// Alloc for sizes served by the size classes (nil turns it off), and
// returns the previous one.
func (z *Zone) InjectSlabFaults(attr *FaultAttr) *FaultAttr {
	return z.failSlab.Swap(attr.arm("failslab"))
}

// shouldFailAllocPage is should_fail_alloc_page: the page-alloc knobs, in
// the kernel's order, then the generic checks. NoFail is never failed and
// consumes no budget.
func (a *FaultAttr) shouldFailAllocPage(gfp Flags, order int) bool {
	switch {
	case order < a.MinOrder:
		return false
	case gfp&NoFail != 0:
		return false
	case a.IgnoreGFPHighmem && gfp&HighMem != 0:
		return false
	case a.IgnoreGFPWait && gfp&DirectReclaim != 0:
		return false
	}
	return a.shouldFail(1<<order, gfp&NoWarn != 0)
}

// shouldFailSlab is should_failslab.
func (a *FaultAttr) shouldFailSlab(gfp Flags, size int) bool {
	switch {
	case gfp&NoFail != 0:
		return false
	case !gfp.AllowsSpinning():
		return false
	case a.IgnoreGFPWait && gfp&DirectReclaim != 0:
		return false
	}
	return a.shouldFail(size, gfp&NoWarn != 0)
}

// shouldFail is should_fail_ex, in the kernel's order of checks:
// probability, times, the stack filter, space, interval, the dice.
func (a *FaultAttr) shouldFail(size int, nowarn bool) bool {
	if a.Probability == 0 {
		return false
	}
	a.mu.Lock()
	if a.times == 0 {
		a.mu.Unlock()
		return false
	}
	a.mu.Unlock()
	if !a.stackFilter() {
		return false
	}
	a.mu.Lock()
	if a.space > size {
		a.space -= size
		a.mu.Unlock()
		return false
	}
	if a.Interval > 1 {
		a.count++
		if a.count%a.Interval != 0 {
			a.mu.Unlock()
			return false
		}
	}
	if a.Probability <= a.rng.IntN(100) {
		a.mu.Unlock()
		return false
	}
	// fail_dump prints the budget as it was before this failure.
	printIt := !nowarn && a.Verbose > 0 && a.ratelimit()
	line := fmt.Sprintf("name %s, interval %d, probability %d, space %d, times %d", a.name, a.Interval, a.Probability, a.space, a.times)
	if a.times != -1 && a.times > 0 {
		a.times--
	}
	a.fails++
	a.mu.Unlock()
	if printIt {
		a.print(line)
	}
	return true
}

// ratelimit applies verbose_ratelimit_interval_ms/_burst. Under a.mu.
func (a *FaultAttr) ratelimit() bool {
	if a.VerboseInterval <= 0 || a.VerboseBurst <= 0 {
		return true
	}
	now := time.Now()
	keep := a.logged[:0]
	for _, t := range a.logged {
		if now.Sub(t) < a.VerboseInterval {
			keep = append(keep, t)
		}
	}
	a.logged = keep
	if len(a.logged) >= a.VerboseBurst {
		return false
	}
	a.logged = append(a.logged, now)
	return true
}

// print is fail_dump: informational lines, and at verbose 2 dump_stack's.
func (a *FaultAttr) print(line string) {
	var b strings.Builder
	b.WriteString("FAULT_INJECTION: forcing a failure.\n" + line + "\n")
	if a.Verbose > 1 {
		g := krules.CurrentGoroutine()
		splat.Dump(&b, g.ID, g.Name, stack.Callers(3))
	}
	krules.Logf("%s", strings.TrimRight(b.String(), "\n"))
}

// stackFilter is fail_stacktrace: with no Require list everything is
// required; any Reject frame vetoes, any Require frame qualifies.
func (a *FaultAttr) stackFilter() bool {
	found := len(a.Require) == 0
	depth := min(a.StackDepth, 32)
	if depth <= 0 || (found && len(a.Reject) == 0) {
		return found
	}
	var pcs [32 + 8]uintptr
	n := runtime.Callers(3, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	for i := 0; i < depth; {
		f, more := frames.Next()
		if matchFunc(a.Reject, f.Function) {
			return false
		}
		if matchFunc(a.Require, f.Function) {
			found = true
		}
		if !stack.IsLibrary(f.Function, f.File) {
			i++ // the depth counts the caller's frames, not krules' own
		}
		if !more {
			break
		}
	}
	return found
}

func matchFunc(list []string, fn string) bool {
	for _, e := range list {
		if p, ok := strings.CutSuffix(e, "*"); ok {
			if strings.HasPrefix(fn, p) {
				return true
			}
		} else if fn == e {
			return true
		}
	}
	return false
}
