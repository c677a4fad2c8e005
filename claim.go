package krules

import (
	"slices"
	"sync"

	"github.com/krules/krules/internal/lineage"
	"github.com/krules/krules/internal/task"
)

// A Claim takes the reports raised on one goroutine, and on the goroutines
// it starts (directly or not), while it is open: they are kept on the claim,
// and handed to its deliver function, instead of being printed. Collect and
// the test helpers of package krulestest are built on it.
//
// Reports are attributed by lineage: a report goes to the claim of the
// goroutine it is about, else to the claim of the nearest goroutine that
// started it. While only one claim is open it takes every report; when the
// lineage cannot be told, every open claim takes the report. Claimed
// reports skip Emit's rate limits; a limit applied before a report is
// raised (bad_page's burst per zone, package gfp) holds for them too.
type Claim struct {
	goid    int64
	deliver func(*Report)
	discard bool // CollectFunc's: hand reports over, keep none
	mu      sync.Mutex
	reports []*Report
}

// OpenClaim opens a claim for the calling goroutine and its descendants.
// deliver, if not nil, is called with every claimed report, after the claim
// kept it, on the goroutine that emitted it. On one goroutine, the claim
// opened first takes precedence over those opened later.
func OpenClaim(deliver func(*Report)) *Claim {
	c := &Claim{goid: task.ID(), deliver: deliver}
	claims.mu.Lock()
	claims.open = append([]*Claim{c}, claims.open...)
	claims.mu.Unlock()
	return c
}

// OpenFallbackClaim opens the claim of last resort: it takes the reports
// raised while no OpenClaim claim is open, as a test binary's main claims
// what no test did. Opening one replaces the previous one.
func OpenFallbackClaim(deliver func(*Report)) *Claim {
	c := &Claim{deliver: deliver}
	claims.mu.Lock()
	claims.fallback = c
	claims.mu.Unlock()
	return c
}

// Close stops the claim from taking reports; those it took stay readable.
// Closing twice is harmless.
func (c *Claim) Close() {
	claims.mu.Lock()
	defer claims.mu.Unlock()
	if claims.fallback == c {
		claims.fallback = nil
	}
	claims.open = slices.DeleteFunc(claims.open, func(x *Claim) bool { return x == c })
	if len(claims.open) == 0 {
		claims.parents = nil // facts about goroutines nobody asks about any more
	}
}

// Reports returns the reports claimed so far, oldest first.
func (c *Claim) Reports() []*Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reports)
}

// Len returns the number of reports claimed so far.
func (c *Claim) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reports)
}

// Last returns the newest claimed report, or nil.
func (c *Claim) Last() *Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.reports) == 0 {
		return nil
	}
	return c.reports[len(c.reports)-1]
}

// Clear forgets the reports claimed so far.
func (c *Claim) Clear() {
	c.mu.Lock()
	c.reports = nil
	c.mu.Unlock()
}

func (c *Claim) take(r *Report) {
	if c.discard {
		c.deliver(r)
		return
	}
	c.mu.Lock()
	c.reports = append(c.reports, r)
	c.mu.Unlock()
	if c.deliver != nil {
		c.deliver(r)
	}
}

// Collect runs fn and returns the reports raised while it ran, on the
// calling goroutine and on goroutines it started, instead of printing them.
// Programs and examples use it to count or show what a scenario provokes.
func Collect(fn func()) []*Report {
	c := OpenClaim(nil)
	defer c.Close()
	fn()
	return c.Reports()
}

// CollectFunc runs fn and hands each report raised while it ran, on the
// calling goroutine and on goroutines it started, to each instead of
// printing it. Unlike Collect it keeps none, so a program that counts
// thousands of reports runs in constant memory. each runs on the goroutine
// that raised the report, possibly on several at once, and must not block.
func CollectFunc(fn func(), each func(*Report)) {
	c := OpenClaim(each)
	c.discard = true
	defer c.Close()
	fn()
}

// claims is the set of open claims. parents caches the goroutine parents
// learnt while attributing reports: goroutine ids are never reused, so an
// edge stays true; the cache only lives while claims are open.
var claims struct {
	mu       sync.Mutex
	open     []*Claim // newest first
	fallback *Claim
	parents  map[int64]int64
}

// claimsFor attributes a report to the open claims (see Claim).
func claimsFor(r *Report) []*Claim {
	claims.mu.Lock()
	defer claims.mu.Unlock()
	switch len(claims.open) {
	case 0:
		if claims.fallback != nil {
			return []*Claim{claims.fallback}
		}
		return nil
	case 1:
		// Unambiguous now, but learn the reporter's parent while it is
		// alive: should a second claim open before its descendants report,
		// a returned goroutine's parent can no longer be found.
		if c := claims.open[0]; r.Goroutine.ID != c.goid && r.Goroutine.ID == task.ID() {
			if _, known := claims.parents[r.Goroutine.ID]; !known {
				if p, ok := lineage.Parent(); ok {
					if claims.parents == nil {
						claims.parents = map[int64]int64{}
					}
					claims.parents[r.Goroutine.ID] = p
				}
			}
		}
		return []*Claim{claims.open[0]}
	}
	byGoroutine := make(map[int64]*Claim, len(claims.open))
	for _, c := range slices.Backward(claims.open) { // oldest wins
		if byGoroutine[c.goid] == nil {
			byGoroutine[c.goid] = c
		}
	}
	if c := attribute(r, byGoroutine); c != nil {
		return []*Claim{c}
	}
	return slices.Clone(claims.open)
}

// attribute walks the report's lineage up to a claiming goroutine: first
// the ancestors the report carries (the raiser may know them when the
// runtime no longer does), then the parent the current goroutine's own
// stack names, then parents cached from earlier walks, and only as a last
// resort a dump of every goroutine (runtime.Stack(all)), whose edges on the
// walked path are cached. Called with claims.mu held.
func attribute(r *Report, byGoroutine map[int64]*Claim) *Claim {
	id := r.Goroutine.ID
	if c := byGoroutine[id]; c != nil {
		return c
	}
	for _, a := range r.Lineage {
		if c := byGoroutine[a]; c != nil {
			return c
		}
		id = a
	}
	var live map[int64]int64
	for hops := 0; id > 0 && hops < 1000; hops++ {
		p, ok := claims.parents[id]
		if !ok && id == task.ID() {
			p, ok = lineage.Parent()
		}
		if !ok {
			if live == nil {
				live = lineage.Live()
			}
			p, ok = live[id]
			if !ok {
				return nil // returned, and nobody told us its parent
			}
		}
		if claims.parents == nil {
			claims.parents = map[int64]int64{}
		}
		claims.parents[id] = p
		if c := byGoroutine[p]; c != nil {
			return c
		}
		id = p
	}
	return nil
}
