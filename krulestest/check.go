package krulestest

import (
	"testing"

	"github.com/krules/krules"
)

// Check makes every report raised while the test runs fail it, with the
// report's text. Reports raised on goroutines the test started count too.
// When the test ends, goroutines that returned while holding locks are
// reported ("still has locks held!"), which fails the test as well.
func Check(tb testing.TB) {
	tb.Helper()
	claim(tb, func(r *krules.Report) { tb.Errorf("krules: %s report:\n%s", r.Kind, r.Text) })
}

// Recorder keeps the reports raised during a test that expects them.
type Recorder struct{ c *krules.Claim }

// Record claims the reports raised while the test runs, without failing it,
// so the test can assert on them. It is how tests provoke reports on
// purpose. Claimed reports skip krules.Emit's rate limits, so the recorder
// holds every one: two sleep-in-atomic reports a microsecond apart are two
// here, where the kernel prints the first of each second. bad_page's limit
// (a burst of 60 bad pages a minute per zone, package gfp) is applied
// before a report is raised, so a recorder gets the reports of only the
// pages it lets through.
func Record(tb testing.TB) *Recorder {
	tb.Helper()
	return &Recorder{claim(tb, nil)}
}

// claim opens a claim for the test's goroutine and closes it when the test
// ends, after reaping the goroutines that returned during it, so that their
// leftover locks are reported to the test.
func claim(tb testing.TB, deliver func(*krules.Report)) *krules.Claim {
	c := krules.OpenClaim(deliver)
	tb.Cleanup(func() {
		krules.ReapExited()
		c.Close()
	})
	return c
}

// Reports returns the reports recorded so far, oldest first.
func (r *Recorder) Reports() []*krules.Report { return r.c.Reports() }

// Kinds returns the kinds of the reports recorded so far, oldest first.
func (r *Recorder) Kinds() []krules.Kind {
	var kinds []krules.Kind
	for _, rep := range r.c.Reports() {
		kinds = append(kinds, rep.Kind)
	}
	return kinds
}

// Len returns the number of reports recorded so far.
func (r *Recorder) Len() int { return r.c.Len() }

// Last returns the newest report, or nil.
func (r *Recorder) Last() *krules.Report { return r.c.Last() }

// Clear forgets the reports recorded so far.
func (r *Recorder) Clear() { r.c.Clear() }
