package task

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// The waits the hung-task detector watches (kernel/hung_task.c looks at
// every task in TASK_UNINTERRUPTIBLE; goroutines have no such state, so the
// krules primitives say when they start and stop waiting). A waiter copies
// its own held locks and stack when it begins: it cannot change them while
// it waits, and the copy, published under the registry's lock, is what the
// detector may read of another goroutine.

// Waiter is one goroutine blocked on a krules primitive.
type Waiter struct {
	ID    int64
	Name  string
	On    unsafe.Pointer // the awaited lock's instance (its map), or nil
	Start time.Time
	Held  []HeldLock // the waiter's held locks, copied as it began waiting
	Stack []uintptr  // where it waits, from the primitive's caller up
}

var waits struct {
	users atomic.Int32 // detectors running; waits are recorded only then
	mu    sync.Mutex
	set   map[*Waiter]struct{}
}

// TrackWaits starts (on) or stops recording waits for one more or one
// fewer detector.
func TrackWaits(on bool) {
	if on {
		waits.users.Add(1)
	} else {
		waits.users.Add(-1)
	}
}

// Tracking reports whether waits are being recorded: one load, for the
// primitives' wait paths.
func Tracking() bool { return waits.users.Load() > 0 }

// BeginWait records that the caller starts waiting on the instance on;
// skip frames above BeginWait's caller start its stack. EndWait(w) when
// the wait is over.
func BeginWait(on unsafe.Pointer, skip int) *Waiter {
	id := ID()
	w := &Waiter{ID: id, On: on, Start: time.Now()}
	if t := lookup(id); t != nil {
		w.Name = t.Name
		w.Held = append([]HeldLock(nil), t.Lockdep.Held...)
	}
	pcs := make([]uintptr, 32)
	w.Stack = pcs[:runtime.Callers(skip+2, pcs)]
	waits.mu.Lock()
	if waits.set == nil {
		waits.set = make(map[*Waiter]struct{})
	}
	waits.set[w] = struct{}{}
	waits.mu.Unlock()
	return w
}

// EndWait ends a wait BeginWait recorded; a nil w is ignored.
func EndWait(w *Waiter) {
	if w == nil {
		return
	}
	waits.mu.Lock()
	delete(waits.set, w)
	waits.mu.Unlock()
}

// Waiters returns the waits under way, longest first. Their fields are not
// written after BeginWait.
func Waiters() []*Waiter {
	waits.mu.Lock()
	out := make([]*Waiter, 0, len(waits.set))
	for w := range waits.set {
		out = append(out, w)
	}
	waits.mu.Unlock()
	for i := 1; i < len(out); i++ { // few: insertion sort by start
		for j := i; j > 0 && out[j].Start.Before(out[j-1].Start); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Holds reports whether w holds instance on: has it in its held locks,
// other than as the lock it waits for (annotated before the wait, as
// lock_acquire comes before the kernel's wait, on top of the list).
func (w *Waiter) Holds(on unsafe.Pointer) bool {
	for i := range w.Held {
		if w.Held[i].Instance == on && !(i == len(w.Held)-1 && on == w.On) {
			return true
		}
	}
	return false
}
