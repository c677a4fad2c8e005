package task

import "sync/atomic"

// Records of goroutines that returned while non-empty (inside a section,
// holding a lock, named) stay busy in the table: only a sweep that knows
// which goroutines are gone can reclaim them (krules.ReapExited). The table
// asks for one when it has grown past a threshold, and never again until
// that sweep is done: the sweep dumps every goroutine's stack, so its cost
// is paid once per doubling of the table, amortised over the records that
// grew it.
//
// The counters are the table's own bookkeeping, not per-goroutine state.
var sweep struct {
	nodes atomic.Int64 // nodes linked in all buckets, busy or idle
	at    atomic.Int64 // sweep when nodes reaches this
	due   atomic.Int32 // 0 idle, 1 due, 2 running
}

// sweepFloor is the table size below which no sweep is asked for: the idle
// nodes the buckets keep on their own, plus as many again.
const sweepFloor = 2 * idlePerBucket << bucketBits

func init() { sweep.at.Store(sweepFloor) }

// noteNodes counts n nodes linked (or unlinked, n < 0) and asks for a sweep
// when the table has grown past the threshold.
func noteNodes(n int64) {
	if sweep.nodes.Add(n) >= sweep.at.Load() {
		sweep.due.CompareAndSwap(0, 1)
	}
}

// SweepDue reports whether the table asked for a sweep that nobody has
// taken yet; it is one atomic load, for the paths that create records.
func SweepDue() bool { return sweep.due.Load() == 1 }

// TakeSweep claims the sweep the table asked for: it returns true to one
// caller, who must run the sweep and then call Swept.
func TakeSweep() bool { return sweep.due.CompareAndSwap(1, 2) }

// Swept says a sweep has finished: the next is asked for once the table
// has doubled from the records the sweep left, on top of the idle nodes the
// buckets keep. (Not from its nodes: the records it reclaimed stay linked,
// idle, until new nodes trim them, and a threshold twice that high let a
// second wave of returned goroutines keep their records.)
func Swept() {
	sweep.at.Store(max(2*int64(Len())+idlePerBucket<<bucketBits, sweepFloor))
	sweep.due.Store(0)
}
