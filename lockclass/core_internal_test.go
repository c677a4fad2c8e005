package lockclass

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// queued returns the number of waiters in c's queue.
func queued(c *core) int {
	q := c.q.Load()
	if q == nil {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for w := q.front(); w != nil; w = w.next() {
		n++
	}
	return n
}

func waitQueued(t *testing.T, c *core, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return queued(c) == n }, 10*time.Second, 50*time.Microsecond,
		"%d waiter(s) queue", n)
}

// lockRecorder runs a goroutine that takes a lock with take, appends name
// to the order (under the lock), and releases it when told, or at once.
type lockRecorder struct {
	took    chan int // the goroutine's place in the order, once it holds the lock
	release chan struct{}
	done    chan struct{}
}

func recordLock(order *[]string, name string, take func(), unlock func(), hold bool) *lockRecorder {
	r := &lockRecorder{took: make(chan int, 1), release: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		take()
		*order = append(*order, name)
		r.took <- len(*order)
		if hold {
			<-r.release
		}
		unlock()
	}()
	return r
}

// A locker may overtake a queued waiter (lock stealing: mutex_trylock and
// the optimistic spin ignore MUTEX_FLAG_WAITERS), but only until the waiter
// has been woken once and found the lock taken: it sets the handoff bit
// (__mutex_trylock_or_handoff), and the next unlock gives it the lock
// (__mutex_handoff) ahead of a locker that was already polling for it.
//
// The steal is a race between the stealer, polling on another P, and the
// waiter the unlock wakes (the unlock yields its P to it); the rounds repeat
// until the stealer wins one, for up to 20 s, since on a loaded machine the
// two Ps' threads often do not run at the same time. A core that hands
// every release to the queue never lets it win.
func TestMutexLockerOvertakesQueuedWaiterUntilHandoff(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("the stealer must run beside the unlocking goroutine")
	}
	v := NewValidator()
	for start, rounds := time.Now(), 1; time.Since(start) < 20*time.Second; rounds++ {
		var m Mutex
		m.Init(WithValidator(v))
		var order []string // appended under m
		m.Lock()
		waiter := recordLock(&order, "waiter", m.Lock, m.Unlock, false)
		waitQueued(t, &m.core, 1)
		polling := make(chan struct{})
		stealer := recordLock(&order, "stealer", func() {
			close(polling)
			for !m.TryLock() {
			}
		}, m.Unlock, true)
		<-polling
		m.Unlock() // wakes the waiter; the stealer may get there first
		if <-stealer.took != 1 {
			<-waiter.took // the waiter won this round
			close(stealer.release)
			<-stealer.done
			<-waiter.done
			continue
		}
		// The waiter, woken, finds the lock taken and sets the handoff bit;
		// it is still queued.
		require.Eventually(t, func() bool { return m.core.state.Load()&cHandoff != 0 },
			10*time.Second, 50*time.Microsecond, "the woken waiter sets the handoff bit")
		require.Equal(t, 1, queued(&m.core))
		polling = make(chan struct{})
		late := recordLock(&order, "late stealer", func() {
			close(polling)
			for !m.TryLock() {
			}
		}, m.Unlock, false)
		<-polling
		close(stealer.release) // its unlock hands the lock to the waiter
		<-waiter.done
		<-late.done
		<-stealer.done
		require.Equal(t, []string{"stealer", "waiter", "late stealer"}, order)
		require.Equal(t, int64(0), m.core.state.Load(), "free, nobody queued")
		t.Logf("the stealer won round %d", rounds)
		return
	}
	t.Fatal("in 20 s no locker overtook the queued waiter")
}

// When the first waiter sets the handoff bit: a mutex waiter the first time
// it is woken and finds the lock taken (__mutex_trylock_or_handoff), an
// rwsem writer only once it has waited RWSEM_WAIT_TIMEOUT
// (rwsem_try_write_lock), and readers at the head likewise, when a writer
// took the lock before the release could let them in (rwsem_mark_wake).
// While it is set nobody steals the lock.
func TestHandoffBitIsSetAsTheKernelSetsIt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    lockMode
		waited  time.Duration
		handoff bool
	}{
		{"mutex, first failed wake", mutexLock, 0, true},
		{"rwsem writer, early", rwsemWrite, 0, false},
		{"rwsem writer, past RWSEM_WAIT_TIMEOUT", rwsemWrite, 5 * time.Millisecond, true},
		{"rwsem readers, early", rwsemRead, 0, false},
		{"rwsem readers, past RWSEM_WAIT_TIMEOUT", rwsemRead, 5 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c core
			q := c.queue()
			w := &waiter{write: tc.mode != rwsemRead, start: nanotime() - tc.waited.Nanoseconds(), ch: make(chan struct{}, 1)}
			q.push(w)
			if w.write {
				// A writer holds the lock; the first waiter was woken.
				c.state.Store(cWriter | cWaiters | cWoken)
				taken, handoff := c.tryFirst(w, tc.mode)
				require.False(t, taken)
				require.Equal(t, tc.handoff, handoff)
				require.Zero(t, c.state.Load()&cWoken, "it has tried")
			} else {
				// A writer took the lock before the release let the
				// readers in.
				c.state.Store(cWriter | cWaiters)
				q.mu.Lock()
				require.False(t, c.wake(q))
				q.mu.Unlock()
			}
			require.Equal(t, tc.handoff, c.state.Load()&cHandoff != 0)
			c.state.And(^int64(cWriter)) // the holder leaves, not yet handing over
			require.Equal(t, !tc.handoff, c.tryLock(), "a steal, unless the handoff bit is set")
		})
	}
}

// A killable waiter whose context is done when the lock is handed to it
// passes the lock on (the err path of rwsem_down_read_slowpath: a waiter
// already woken with the lock owns it, and its release lets the next waiter
// in), and one woken to try the lock passes the wake-up on
// (rwsem_del_wake_waiter and __mutex_lock_common's err path: the new first
// waiter may take the lock). With one P nothing runs between the
// cancellation and the unlock that hands over or wakes, so the waiter's
// wake-up finds both, and select picks either: the lock (it returns nil,
// holding it) or the cancellation, when it must pass the lock or the wake
// on. Either way the writer queued behind it gets the lock; the rounds
// repeat until the cancellation has been picked once.
func TestKillableWaiterPassesOnWhatItWasGiven(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	v := NewValidator()
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context, errc chan<- error) (c *core, lock, unlock func())
	}{
		{"a reader handed the read side", func(ctx context.Context, errc chan<- error) (*core, func(), func()) {
			s := new(RWSem)
			s.Init(WithValidator(v))
			s.Lock()
			go func() {
				err := s.RLockKillable(ctx)
				if err == nil {
					s.RUnlock()
				}
				errc <- err
			}()
			return &s.core, s.Lock, s.Unlock
		}},
		{"a mutex waiter woken to try", func(ctx context.Context, errc chan<- error) (*core, func(), func()) {
			m := new(Mutex)
			m.Init(WithValidator(v))
			m.Lock()
			go func() {
				err := m.LockKillable(ctx)
				if err == nil {
					m.Unlock()
				}
				errc <- err
			}()
			return &m.core, m.Lock, m.Unlock
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 64 {
				ctx, cancel := context.WithCancel(context.Background())
				errc := make(chan error, 1)
				c, lock, unlock := tc.run(ctx, errc)
				waitQueued(t, c, 1)
				var order []string
				writer := recordLock(&order, "writer", lock, unlock, false)
				waitQueued(t, c, 2)
				cancel()
				unlock() // hands over or wakes; the waiter's context is done
				err := <-errc
				select {
				case <-writer.done:
				case <-time.After(10 * time.Second):
					t.Fatalf("the writer behind never got the lock (the waiter returned %v)", err)
				}
				require.Equal(t, []string{"writer"}, order)
				require.Equal(t, int64(0), c.state.Load(), "free, nobody queued")
				if err != nil {
					require.ErrorIs(t, err, context.Canceled)
					return
				}
			}
			t.Fatal("in 64 rounds the waiter never saw its cancellation first")
		})
	}
}

// Every way in and out of the core at once, on one RWSem and one Mutex:
// writers, readers, downgrades, trylocks and killable waits whose contexts
// expire at random, with GOMAXPROCS 1 and 2 (the spin and the yields take
// different ways). Exclusion holds throughout (a writer sees nobody else
// inside; a reader sees no writer), no wake-up is lost (every goroutine
// finishes), and both locks end free with nobody queued.
func TestCoreStress(t *testing.T) {
	for _, procs := range []int{1, 2} {
		prev := runtime.GOMAXPROCS(procs)
		coreStress(t)
		runtime.GOMAXPROCS(prev)
	}
}

func coreStress(t *testing.T) {
	var s RWSem
	var m Mutex
	v := NewValidator()
	s.Init(WithValidator(v))
	m.Init(WithValidator(v))
	var readers, writers, mutexHolders atomic.Int32
	var bad atomic.Int32
	// A holder yields, and now and then sleeps, so that the others queue.
	hold := func(r *rand.Rand) {
		if r.IntN(16) == 0 {
			time.Sleep(time.Microsecond)
		} else {
			runtime.Gosched()
		}
	}
	check := func(write bool, r *rand.Rand) {
		if w, r := writers.Load(), readers.Load(); write && (w != 1 || r != 0) || !write && w != 0 {
			bad.Add(1)
		}
		hold(r)
	}
	const goroutines, rounds = 12, 2000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for range rounds {
				switch op := r.IntN(8); op {
				case 0, 1: // writer, downgrading half the time
					s.Lock()
					writers.Add(1)
					check(true, r)
					if op == 0 {
						writers.Add(-1)
						s.Unlock()
						break
					}
					writers.Add(-1)
					readers.Add(1)
					s.Downgrade()
					check(false, r)
					readers.Add(-1)
					s.RUnlock()
				case 2, 3, 4: // reader
					s.RLock()
					readers.Add(1)
					check(false, r)
					readers.Add(-1)
					s.RUnlock()
				case 5: // killable, either side
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(r.IntN(50))*time.Microsecond)
					if r.IntN(2) == 0 {
						if s.LockKillable(ctx) == nil {
							writers.Add(1)
							check(true, r)
							writers.Add(-1)
							s.Unlock()
						}
					} else if s.RLockKillable(ctx) == nil {
						readers.Add(1)
						check(false, r)
						readers.Add(-1)
						s.RUnlock()
					}
					cancel()
				case 6: // the mutex, killable half the time
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(r.IntN(50))*time.Microsecond)
					if r.IntN(2) == 0 {
						m.Lock()
					} else if m.LockKillable(ctx) != nil {
						cancel()
						break
					}
					if mutexHolders.Add(1) != 1 {
						bad.Add(1)
					}
					hold(r)
					mutexHolders.Add(-1)
					m.Unlock()
					cancel()
				case 7: // trylocks
					if m.TryLock() {
						if mutexHolders.Add(1) != 1 {
							bad.Add(1)
						}
						mutexHolders.Add(-1)
						m.Unlock()
					}
					if s.TryRLock() {
						readers.Add(1)
						check(false, r)
						readers.Add(-1)
						s.RUnlock()
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("a wake-up was lost:\n%s", buf[:runtime.Stack(buf, true)])
	}
	require.Zero(t, bad.Load(), "exclusion violated")
	require.Equal(t, int64(0), s.core.state.Load(), "the rwsem ends free with nobody queued")
	require.Equal(t, int64(0), m.core.state.Load(), "the mutex ends free with nobody queued")
}
