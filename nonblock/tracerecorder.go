package nonblock

import (
	"bytes"
	"errors"
	"runtime/trace"
	"sync"
	"time"

	"github.com/krules/krules/internal/lineage"
)

// The flight recorder. The runtime allows one at a time, so every trace
// checker in the process shares this one: the first to start starts it, the
// last to stop stops it (one "recording"). This is process-wide state like
// the runtime's tracer itself; it resets whenever no checker is running.
//
// A flight recorder rather than trace.Start, because it runs alongside
// `go test -trace` (which owns trace.Start) and keeps only a moving window.
// The window is long enough for any ordinary test: a section's region must
// still be in it when the checker takes its snapshot, or blocks inside that
// section go unseen.
var recorder struct {
	// snap serialises snapshots: FlightRecorder.WriteTo refuses to run
	// twice at once, and stopping waits for it.
	snap sync.Mutex

	mu       sync.Mutex
	fr       *trace.FlightRecorder
	checkers []*TraceChecker
	// reported holds the findings of this recording already delivered or
	// handed to their owner, so that overlapping snapshots report each once.
	reported map[findingKey]bool
}

const (
	recorderMinAge   = time.Minute
	recorderMaxBytes = 64 << 20
)

// join adds c to the recording, starting it if c is the first.
func join(c *TraceChecker) error {
	recorder.mu.Lock()
	defer recorder.mu.Unlock()
	if recorder.fr == nil {
		fr := trace.NewFlightRecorder(trace.FlightRecorderConfig{MinAge: recorderMinAge, MaxBytes: recorderMaxBytes})
		if err := fr.Start(); err != nil {
			return err
		}
		recorder.fr = fr
		recorder.reported = map[findingKey]bool{}
	}
	recorder.checkers = append(recorder.checkers, c)
	return nil
}

// leave removes c from the recording, stopping it if c was the last.
func leave(c *TraceChecker) {
	recorder.snap.Lock()
	defer recorder.snap.Unlock()
	recorder.mu.Lock()
	defer recorder.mu.Unlock()
	for i, x := range recorder.checkers {
		if x == c {
			recorder.checkers = append(recorder.checkers[:i:i], recorder.checkers[i+1:]...)
			break
		}
	}
	if len(recorder.checkers) == 0 && recorder.fr != nil {
		recorder.fr.Stop()
		recorder.fr = nil
		recorder.reported = nil
	}
}

// snapshot reads the recording so far.
func snapshot() (*traceResult, error) {
	recorder.snap.Lock()
	defer recorder.snap.Unlock()
	recorder.mu.Lock()
	fr := recorder.fr
	recorder.mu.Unlock()
	if fr == nil {
		return nil, errors.New("the flight recorder is not running")
	}
	var buf bytes.Buffer
	if _, err := fr.WriteTo(&buf); err != nil {
		return nil, err
	}
	return parseTrace(&buf)
}

// delivery is a finding on its way to a checker, with the goroutine's
// ancestors that attribute it to the checker's claim (Report.Lineage).
type delivery struct {
	f       *finding
	lineage []int64 // parent first, up to the checker's goroutine
}

// distribute hands the new findings of a snapshot to the checkers that own
// them (the checker whose goroutine started the blocking goroutine, directly
// or not): c's are returned, with what c was handed by earlier snapshots;
// other running checkers' are kept for them; findings no checker owns are
// returned apart, for c to report as any other report.
func distribute(c *TraceChecker, res *traceResult) (mine, unowned []delivery) {
	live := lineage.Live()
	parent := func(id int64) (int64, bool) {
		if p, ok := res.parents[id]; ok {
			return p, true
		}
		p, ok := live[id]
		return p, ok
	}
	recorder.mu.Lock()
	defer recorder.mu.Unlock()
	roots := map[int64]*TraceChecker{}
	for _, x := range recorder.checkers {
		roots[x.root] = x
	}
	for _, f := range res.findings {
		if recorder.reported[f.key] {
			continue
		}
		recorder.reported[f.key] = true
		d := delivery{f: f}
		var owner *TraceChecker
		for id, hops := f.goid, 0; hops < 1000; hops++ {
			if owner = roots[id]; owner != nil {
				break
			}
			p, ok := parent(id)
			if !ok || p <= 0 {
				break
			}
			d.lineage = append(d.lineage, p)
			id = p
		}
		switch owner {
		case nil:
			d.lineage = nil
			unowned = append(unowned, d)
		case c:
			mine = append(mine, d)
		default:
			owner.handed = append(owner.handed, d)
		}
	}
	mine = append(c.handed, mine...)
	c.handed = nil
	return mine, unowned
}
