package mmnotifier_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
)

// newZone returns a zone of size bytes, closed when the test ends.
func newZone(t testing.TB, size int, opts ...gfp.ZoneOption) *gfp.Zone {
	t.Helper()
	z, err := gfp.NewZone(size, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, z.Close()) })
	return z
}

// newMM returns an address space on a zone of its own (8 MiB unless opts
// name one), torn down when the test ends.
// Every test starts from an empty default validator (lockdep turns itself
// off after a report), so tests that use it must not run in parallel.
func newMM(t testing.TB, opts ...mmnotifier.Option) *mmnotifier.MM {
	t.Helper()
	krulestest.ResetDefault(t)
	z := newZone(t, 8<<20, gfp.WithoutKswapd())
	mm := mmnotifier.NewMM(append([]mmnotifier.Option{mmnotifier.WithZone(z), mmnotifier.WithTask(42, "victim")}, opts...)...)
	t.Cleanup(func() {
		if mm.Users() > 0 {
			mm.Exit()
		}
		mmnotifier.Synchronize()
	})
	return mm
}

// driverLock returns a driver's mutex, of a class of its own.
func driverLock() *lockclass.Mutex {
	mu := new(lockclass.Mutex)
	mu.Init(lockclass.WithName("&drv->lock"))
	return mu
}

// mapTouched maps n pages read-write and touches each one.
func mapTouched(t testing.TB, mm *mmnotifier.MM, n int) uint64 {
	t.Helper()
	addr, err := mm.Mmap(uint64(n)*mmnotifier.PageSize, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	for i := range n {
		_, err := mm.Fault(addr+uint64(i)*mmnotifier.PageSize, true)
		require.NoError(t, err)
	}
	return addr
}

// call is one callback a recorder saw.
type call struct {
	who       string
	what      string // "start", "end", "release"
	event     mmnotifier.Event
	start     uint64
	end       uint64
	blockable bool
	owner     any
}

// recorder records callbacks of several notifiers in one order.
type recorder struct {
	mu    sync.Mutex
	calls []call
}

func (r *recorder) add(c call) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
}

func (r *recorder) take() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

func (r *recorder) whats() []string {
	var out []string
	for _, c := range r.take() {
		out = append(out, c.who+"."+c.what)
	}
	return out
}

// recordedMM is a new address space with one recNotifier, "n", registered,
// and its recorder.
func recordedMM(t *testing.T) (*mmnotifier.MM, *recorder) {
	t.Helper()
	mm := newMM(t)
	rec := &recorder{}
	_, err := mmnotifier.Register(mm, &recNotifier{"n", rec})
	require.NoError(t, err)
	return mm, rec
}

// recNotifier is a notifier with start, end and release that records.
type recNotifier struct {
	name string
	rec  *recorder
}

func (n *recNotifier) note(what string, r *mmnotifier.Range) {
	n.rec.add(call{who: n.name, what: what, event: r.Event, start: r.Start, end: r.End, blockable: r.Blockable(), owner: r.Owner})
}

func (n *recNotifier) InvalidateRangeStart(r *mmnotifier.Range) error { n.note("start", r); return nil }
func (n *recNotifier) InvalidateRangeEnd(r *mmnotifier.Range)         { n.note("end", r) }
func (n *recNotifier) Release(*mmnotifier.MM)                         { n.rec.add(call{who: n.name, what: "release"}) }

// whileReadLocked runs op on another goroutine while the test holds mm's
// mmap_lock for reading, and reports whether op finished within wait,
// before the lock was released. It returns once op has finished.
func whileReadLocked(mm *mmnotifier.MM, wait time.Duration, op func()) bool {
	mm.MmapLock().RLock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		op()
	}()
	early := false
	select {
	case <-done:
		early = true
	case <-time.After(wait):
	}
	mm.MmapLock().RUnlock()
	<-done
	return early
}
