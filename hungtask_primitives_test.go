package krules_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mempool"
	"github.com/krules/krules/nonblock"
)

// Every krules primitive a goroutine can sleep on shows to the hung-task
// detector, not only the locks: a goroutine blocked on one past the timeout
// is reported with the primitive in its Call Trace, and the wait ends
// normally once released.
func TestHungTaskSeesEveryPrimitivesWait(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame string // in the waiter's Call Trace
		// setup returns the wait, which blocks until release is called.
		setup func(t *testing.T) (wait, release func())
	}{
		{"WaitQueue", `nonblock\.\(\*WaitQueue\)\.Wait`, func(t *testing.T) (func(), func()) {
			var q nonblock.WaitQueue
			var ready atomic.Bool
			return func() { require.NoError(t, q.Wait(context.Background(), ready.Load)) },
				func() { ready.Store(true); q.WakeUp() }
		}},
		{"Completion", `nonblock\.\(\*Completion\)\.Wait`, func(t *testing.T) (func(), func()) {
			var c nonblock.Completion
			return c.Wait, c.Complete
		}},
		{"Semaphore", `nonblock\.\(\*Semaphore\)\.Down`, func(t *testing.T) (func(), func()) {
			s := nonblock.NewSemaphore(1)
			s.Down() // a free unit is taken at once, detector or not
			require.False(t, s.TryDown())
			return s.Down, s.Up
		}},
		{"mempool", `mempool\.\(\*Pool\[\.\.\.\]\)\.Alloc`, func(t *testing.T) (func(), func()) {
			var made atomic.Int32
			p, err := mempool.New(1, func(gfp.Flags) (int, error) {
				if made.Add(1) > 1 {
					return 0, errors.New("out of elements")
				}
				return 1, nil
			}, func(int) {}, mempool.WithTimeout(time.Minute)) // the kernel's 5 s would wake it before 120 s
			require.NoError(t, err)
			x, err := p.Alloc(gfp.Kernel)
			require.NoError(t, err)
			return func() {
					y, err := p.Alloc(gfp.Kernel)
					require.NoError(t, err)
					p.Free(y)
					require.NoError(t, p.Close())
				},
				func() { p.Free(x) }
		}},
		{"Fence.Wait", `dmafence\.\(\*Fence\)\.Wait`, func(t *testing.T) (func(), func()) {
			f := dmafence.New(dmafence.ContextAlloc(1), 1)
			return func() { require.NoError(t, f.Wait(context.Background())) },
				func() { require.NoError(t, f.Signal()) }
		}},
		{"Fence.WaitTimeout", `dmafence\.\(\*Fence\)\.WaitTimeout`, func(t *testing.T) (func(), func()) {
			f := dmafence.New(dmafence.ContextAlloc(1), 1)
			return func() { require.Positive(t, f.WaitTimeout(time.Minute)) },
				func() { require.NoError(t, f.Signal()) }
		}},
		{"WWMutex", `lockclass\.\(\*WWMutex\)\.Lock`, func(t *testing.T) (func(), func()) {
			var m lockclass.WWMutex
			m.Init(lockclass.NewWWClass("hung_ww"), lockclass.WithValidator(lockclass.NewValidator()))
			// The holder is a goroutine of its own: the owner unlocks.
			locked, unlock, done := make(chan error), make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				locked <- m.Lock(nil)
				<-unlock
				m.Unlock()
			}()
			require.NoError(t, <-locked)
			return func() { require.NoError(t, m.Lock(nil)); m.Unlock() },
				func() { close(unlock); <-done }
		}},
		{"SynchronizeRCU", `lockclass\.SynchronizeRCU`, func(t *testing.T) (func(), func()) {
			in, out := make(chan struct{}), make(chan struct{})
			go func() { lockclass.RCUReadLock(); close(in); <-out; lockclass.RCUReadUnlock() }()
			<-in
			return lockclass.SynchronizeRCU, func() { close(out) }
		}},
		{"SRCU", `lockclass\.\(\*SRCU\)\.Synchronize`, func(t *testing.T) (func(), func()) {
			var s lockclass.SRCU
			s.Init(lockclass.WithValidator(lockclass.NewValidator()))
			in, out := make(chan struct{}), make(chan struct{})
			go func() { i := s.ReadLock(); close(in); <-out; s.ReadUnlock(i) }()
			<-in
			return s.Synchronize, func() { close(out) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := krulestest.Record(t)
			const timeout = 50 * time.Millisecond
			krulestest.DetectHungTasksAfter(t, timeout)
			wait, release := tc.setup(t)
			id, ended := make(chan int64, 1), make(chan struct{})
			krules.Go("hung-"+tc.name, func() {
				defer close(ended)
				id <- krules.CurrentGoroutine().ID
				wait()
			})
			gid := <-id
			var hung *krules.Report
			require.Eventually(t, func() bool {
				for _, r := range rec.Reports() {
					if r.Kind == krules.HungTask && r.Goroutine.ID == gid {
						hung = r
						return true
					}
				}
				return false
			}, 20*timeout+5*time.Second, time.Millisecond)
			release()
			<-ended
			require.Regexp(t, `^INFO: task hung-`+tc.name+`:`+strconv.FormatInt(gid, 10)+` blocked for more than \d+ seconds\.$`, hung.Headline)
			require.Regexp(t, `Call Trace:\n( .*\n)* `+tc.frame, hung.Text)
			require.Equal(t, []krules.Kind{krules.HungTask}, rec.Kinds(), "one report, and only the hung task's")
		})
	}
}
