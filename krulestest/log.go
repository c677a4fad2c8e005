package krulestest

import (
	"strings"
	"sync"
	"testing"

	"github.com/krules/krules"
)

// Log is what krules printed while a CaptureLog was open: the kernel log
// (dmesg) of a test.
type Log struct {
	mu sync.Mutex
	b  strings.Builder
}

// CaptureLog sends krules' output (krules.SetOutput) to a Log until the
// test ends, then puts the previous writer back. The output is the
// informational lines the kernel prints with pr_info or pr_warn, which are
// not reports ("%pS callback failed with %d in non-blockable context.",
// "oom_reaper: unable to reap pid:%d (%s)"), and the reports no claim took.
// The writer is the process's one, so tests that capture must not run in
// parallel with tests that print.
func CaptureLog(tb testing.TB) *Log {
	tb.Helper()
	l := &Log{}
	prev := krules.SetOutput(l)
	tb.Cleanup(func() { krules.SetOutput(prev) })
	return l
}

// Write appends p; krules calls it under its own lock, tests read the Log
// from other goroutines.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything printed so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
