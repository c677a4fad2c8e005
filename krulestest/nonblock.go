package krulestest

import (
	"testing"

	"github.com/krules/krules"
	"github.com/krules/krules/nonblock"
)

// TraceCheck checks the test's goroutine, and every goroutine it starts,
// with the execution tracer until the test ends (see nonblock.TraceChecker).
// Call it first in the test, before entering sections. When the test ends,
// every finding is reported through krules' reports: to the test's Record if
// it has one (call Record first, so that it is still recording when the test
// ends, or call Flush before asserting), else it fails the test with the
// report's text. Parallel tests may each call it: they share one recorder,
// and each finding goes to the test whose goroutines blocked.
func TraceCheck(tb testing.TB, opts ...nonblock.TraceOption) *nonblock.TraceChecker {
	tb.Helper()
	fail := nonblock.OnUnclaimed(func(r *krules.Report) { tb.Errorf("krules: %s report:\n%s", r.Kind, r.Text) })
	c, err := nonblock.StartTraceCheck(append(opts[:len(opts):len(opts)], fail)...)
	if err != nil {
		tb.Fatalf("krulestest.TraceCheck: %v", err)
	}
	tb.Cleanup(func() {
		if err := c.Stop(); err != nil {
			tb.Errorf("krulestest.TraceCheck: %v", err)
		}
	})
	return c
}
