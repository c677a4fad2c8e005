package nonblock

import (
	"context"
	"math"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/krules/krules/internal/task"
	"golang.org/x/sync/semaphore"
)

// Semaphore is the kernel's struct semaphore (kernel/locking/semaphore.c): a
// count of free units with FIFO waiters. Down takes a unit, sleeping while
// there is none; Up gives one back and may be called from any context,
// including an atomic section, and by a goroutine that never called Down;
// the count may grow past its initial value, as in the kernel. The sleeping
// downs call MightSleep first, so a Down in an atomic or non-block section
// is reported even when a unit is free. Semaphores have no lockdep map in
// the kernel, so the lock validator does not track them either.
//
// It is built on golang.org/x/sync/semaphore's Weighted, whose FIFO queue
// matches the kernel's wait list. A Weighted has a fixed size and panics on
// a release past it, while the kernel's count has no ceiling, so the
// Weighted is made with room for math.MaxInt64 units and all but the
// semaphore's count acquired up front: Up is then a Release that cannot
// overflow. What it costs: a Down or Up without waiters takes the Weighted's
// sync.Mutex (the kernel takes its raw spinlock, the same shape), and a Down
// that has to wait allocates a waiter and its channel.
//
// The zero value is a semaphore with count 0; NewSemaphore or Init sets
// another (sema_init). A Semaphore must not be copied after first use.
type Semaphore struct {
	_ noCopy
	w atomic.Pointer[semaphore.Weighted]
}

// NewSemaphore returns a semaphore with n free units: sema_init(sem, n).
func NewSemaphore(n int) *Semaphore {
	s := new(Semaphore)
	s.Init(n)
	return s
}

// Init (re)initialises the semaphore with n free units; it must not be in
// use.
func (s *Semaphore) Init(n int) { s.w.Store(newWeighted(int64(n))) }

func newWeighted(n int64) *semaphore.Weighted {
	w := semaphore.NewWeighted(math.MaxInt64)
	if !w.TryAcquire(math.MaxInt64 - n) {
		panic("nonblock: Semaphore count out of range")
	}
	return w
}

func (s *Semaphore) weighted() *semaphore.Weighted {
	if w := s.w.Load(); w != nil {
		return w
	}
	s.w.CompareAndSwap(nil, newWeighted(0))
	return s.w.Load()
}

// Down takes a unit, sleeping uninterruptibly until one is free: down().
// The kernel discourages down() in new code in favour of the killable wait
// (DownContext here).
func (s *Semaphore) Down() {
	MightSleep()
	_ = s.acquire(context.Background())
}

// DownContext takes a unit, or returns ctx.Err() if ctx is done first:
// down_interruptible and down_killable, whose -EINTR is ctx.Err() here. A
// free unit is taken even if ctx is done already: the kernel tests the
// count before it looks for a pending signal, which only a down that has
// to wait does (___down_common); the Weighted's Acquire would fail first.
func (s *Semaphore) DownContext(ctx context.Context) error {
	MightSleep()
	if s.weighted().TryAcquire(1) {
		return nil
	}
	return s.acquire(ctx)
}

// DownTimeout takes a unit, or returns context.DeadlineExceeded after d:
// down_timeout, whose -ETIME is context.DeadlineExceeded here.
func (s *Semaphore) DownTimeout(d time.Duration) error {
	MightSleep()
	w := s.weighted()
	if w.TryAcquire(1) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.acquire(ctx)
}

// acquire takes a unit, waiting as long as ctx allows; a wait shows to the
// hung-task detector (kernel/hung_task.c), as down()'s
// TASK_UNINTERRUPTIBLE sleep does.
func (s *Semaphore) acquire(ctx context.Context) error {
	w := s.weighted()
	if !task.Tracking() {
		return w.Acquire(ctx, 1)
	}
	if w.TryAcquire(1) {
		return nil
	}
	defer task.EndWait(task.BeginWait(unsafe.Pointer(s), 1))
	return w.Acquire(ctx, 1)
}

// TryDown takes a unit if one is free, without sleeping, and reports
// whether it did: down_trylock, which returns 0 on success (the inverse of
// this result, and of mutex_trylock). It may be called in atomic sections.
func (s *Semaphore) TryDown() bool { return s.weighted().TryAcquire(1) }

// Up gives a unit back, waking the first waiter: up(). Any goroutine may
// call it in any context, and the count may exceed its initial value.
func (s *Semaphore) Up() { s.weighted().Release(1) }
