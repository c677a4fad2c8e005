package mmnotifier

import (
	"reflect"
	"sync/atomic"
)

// Funcs builds a notifier out of functions and counts its calls, for tests,
// benchmarks and quick experiments:
//
//	f := &mmnotifier.Funcs{Start: func(r *mmnotifier.Range) error { ...; return nil }}
//	sub, err := mmnotifier.Register(mm, f.Notifier())
//	...
//	fmt.Println(f.Counts().Starts)
//
// A nil Start always succeeds. A nil End or Release means the notifier has
// no such callback, which matters: a notifier whose start can fail must not
// have an end. The counts are atomic, so they cost a contended cache line
// when many goroutines invalidate at once; count in your own callbacks if
// that matters.
type Funcs struct {
	Start   func(r *Range) error
	End     func(r *Range)
	Release func(mm *MM)

	starts, ends, failures, releases atomic.Int64
}

// Counts are the calls a Funcs notifier has seen.
type Counts struct {
	// Starts and Ends count InvalidateRangeStart and InvalidateRangeEnd
	// calls, Failures the starts that returned an error, Releases the
	// Release calls.
	Starts, Ends, Failures, Releases int64
}

// Counts returns the calls so far.
func (f *Funcs) Counts() Counts {
	return Counts{Starts: f.starts.Load(), Ends: f.ends.Load(), Failures: f.failures.Load(), Releases: f.releases.Load()}
}

// Notifier returns the notifier to register: one that implements
// EndNotifier only if End is set and ReleaseNotifier only if Release is.
// Set the functions before calling it.
func (f *Funcs) Notifier() Notifier {
	switch {
	case f.End != nil && f.Release != nil:
		return funcsEndRelease{funcsEnd{funcsStart{f}}}
	case f.End != nil:
		return funcsEnd{funcsStart{f}}
	case f.Release != nil:
		return funcsRelease{funcsStart{f}}
	}
	return funcsStart{f}
}

type funcsStart struct{ f *Funcs }

func (n funcsStart) InvalidateRangeStart(r *Range) error {
	n.f.starts.Add(1)
	if n.f.Start == nil {
		return nil
	}
	err := n.f.Start(r)
	if err != nil {
		n.f.failures.Add(1)
	}
	return err
}

// callback names the function behind the start callback in failure logs.
func (n funcsStart) callback() uintptr {
	if n.f.Start == nil {
		return 0
	}
	return reflect.ValueOf(n.f.Start).Pointer()
}

type funcsEnd struct{ funcsStart }

func (n funcsEnd) InvalidateRangeEnd(r *Range) {
	n.f.ends.Add(1)
	n.f.End(r)
}

type funcsRelease struct{ funcsStart }

func (n funcsRelease) Release(mm *MM) {
	n.f.releases.Add(1)
	n.f.Release(mm)
}

type funcsEndRelease struct{ funcsEnd }

func (n funcsEndRelease) Release(mm *MM) {
	n.f.releases.Add(1)
	n.f.Release(mm)
}
