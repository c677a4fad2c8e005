package lockclass

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lock_stat's clock measures in nanoseconds whatever it reads: a 5 ms sleep
// is at least 5 ms and not wildly more, TSC or not.
func TestStatClockMeasuresNanoseconds(t *testing.T) {
	statClockInit()
	for range 3 {
		start, wall := statNow(), time.Now()
		time.Sleep(5 * time.Millisecond)
		d, w := statNanos(statNow()-start), time.Since(wall).Nanoseconds()
		require.NotZero(t, start)
		require.InDelta(t, float64(w), float64(d), 0.01*float64(w)+1000, "clock %d ns, wall %d ns", d, w)
	}
	if haveTSC && kernelTrustsTSC() {
		require.True(t, statClk.tsc, "the kernel's clocksource is the TSC, so lock_stat's is too")
	}
}
