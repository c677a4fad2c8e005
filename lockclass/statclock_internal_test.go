package lockclass

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lock_stat's clock measures in nanoseconds whatever it reads: a 5 ms sleep
// is at least 5 ms and not wildly more, TSC or not. Each clock read is
// bracketed by wall-clock reads, so that a preemption between the two
// clocks (the goroutine descheduled under -race on a busy host) widens the
// outer wall interval rather than failing the test: the clock's interval
// must lie within 1% of the inner and the outer one.
func TestStatClockMeasuresNanoseconds(t *testing.T) {
	statClockInit()
	for range 3 {
		before := time.Now()
		start := statNow()
		after := time.Now()
		time.Sleep(5 * time.Millisecond)
		endBefore := time.Now()
		end := statNow()
		endAfter := time.Now()
		require.NotZero(t, start)
		d := float64(statNanos(end - start))
		inner, outer := float64(endBefore.Sub(after)), float64(endAfter.Sub(before))
		require.GreaterOrEqual(t, d, 0.99*inner-1000, "clock %.0f ns, wall at least %.0f ns", d, inner)
		require.LessOrEqual(t, d, 1.01*outer+1000, "clock %.0f ns, wall at most %.0f ns", d, outer)
	}
	if haveTSC && kernelTrustsTSC() {
		require.True(t, statClk.tsc, "the kernel's clocksource is the TSC, so lock_stat's is too")
	}
}
