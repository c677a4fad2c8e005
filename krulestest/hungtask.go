package krulestest

import (
	"testing"
	"time"

	"github.com/krules/krules"
)

// DetectHungTasks runs krules' hung-task detector (khungtaskd) while the
// test runs, with a timeout that fires before go test -timeout kills the
// binary: half the time left until t.Deadline(), at most
// krules.DefaultHungTaskTimeout. A goroutine the test leaves waiting on a
// krules primitive (a lock, a wait queue, a mempool, a completion, a
// semaphore, a fence, a grace period) that long is reported ("INFO: task NAME:ID blocked for more
// than N seconds."), which fails a test under Check. It returns the timeout.
func DetectHungTasks(t *testing.T) time.Duration {
	t.Helper()
	timeout := krules.DefaultHungTaskTimeout
	if d, ok := t.Deadline(); ok {
		timeout = min(timeout, max(time.Until(d)/2, time.Millisecond))
	}
	DetectHungTasksAfter(t, timeout)
	return timeout
}

// DetectHungTasksAfter is DetectHungTasks with the timeout given.
func DetectHungTasksAfter(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	tb.Cleanup(krules.StartHungTaskDetector(timeout))
}
