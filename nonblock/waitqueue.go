package nonblock

import (
	"context"
	"sync"
	"time"
	"unsafe"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
)

// WaitQueue is the kernel's wait_queue_head_t: goroutines wait on it for a
// condition, and whoever changes the condition wakes them all. Waits check
// that the goroutine may sleep, and can be cut short with a context (the
// killable waits). The zero value is ready to use; a WaitQueue must not be
// copied after first use.
//
// Every waiter is woken by every WakeUp (there are no exclusive waits);
// waiters then re-test their condition, so a wake-up is never lost.
type WaitQueue struct {
	_       noCopy
	mu      sync.Mutex
	ch      chan struct{} // closed by the next WakeUp
	waiters int           // tickets prepared and not yet finished
}

// Ticket is a registration for the next WakeUp, taken before the condition is
// tested (prepare_to_wait), so a WakeUp that comes between the test and the
// sleep still wakes the sleeper. Every ticket ends with Sleep or Finish,
// once: a Sleep or Finish after the ticket ended warns (as
// DEBUG_LOCKS_WARN_ON would; finish_wait on a dequeued entry has nothing
// to do) and does nothing else. Copies of a ticket are the same ticket.
type Ticket struct {
	p *ticket
}

type ticket struct {
	q     *WaitQueue
	ch    <-chan struct{}
	ended bool // under q.mu
}

// Prepare registers the caller for the next WakeUp: prepare_to_wait(). It
// does not sleep and may be called under a lock, as the kernel does.
func (q *WaitQueue) Prepare() Ticket {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ch == nil {
		q.ch = make(chan struct{})
	}
	q.waiters++
	return Ticket{&ticket{q: q, ch: q.ch}}
}

// Finish withdraws a ticket that will not Sleep: finish_wait().
func (t Ticket) Finish() {
	if !t.end() {
		krules.Emit(krules.Warn(krules.NonBlockImbalance, "Ticket.Finish: the ticket has ended already", 1))
	}
}

// end ends the ticket and reports whether it was still open.
func (t Ticket) end() bool {
	q := t.p.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if t.p.ended {
		return false
	}
	t.p.ended = true
	q.waiters--
	return true
}

// Sleep waits for the WakeUp the ticket was taken for, for ctx to be done, or
// for timeout to pass (a timeout <= 0 waits without one): the kernel's
// schedule_timeout() after prepare_to_wait(). It reports whether it was woken,
// and ctx.Err() if it was cut short.
func (t Ticket) Sleep(ctx context.Context, timeout time.Duration) (woken bool, err error) {
	MightSleep()
	t.p.q.mu.Lock()
	ended := t.p.ended
	t.p.q.mu.Unlock()
	if ended {
		// not registered for any WakeUp any more: it would sleep for ever
		krules.Emit(krules.Warn(krules.NonBlockImbalance, "Ticket.Sleep: the ticket has ended already (Sleep after Finish)", 1))
		return false, nil
	}
	defer t.end()
	// The hung-task detector's view of the wait (kernel/hung_task.c).
	if task.Tracking() {
		defer task.EndWait(task.BeginWait(unsafe.Pointer(t.p.q), 0))
	}
	var expire <-chan time.Time
	if timeout > 0 {
		tm := time.NewTimer(timeout)
		defer tm.Stop()
		expire = tm.C
	}
	select {
	case <-t.p.ch:
		return true, nil
	case <-expire:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// Wait sleeps until cond returns true or ctx is done: wait_event_killable().
// cond is tested before each sleep and after each wake-up.
func (q *WaitQueue) Wait(ctx context.Context, cond func() bool) error {
	MightSleep()
	for {
		t := q.Prepare()
		if cond() {
			t.Finish()
			return nil
		}
		if _, err := t.Sleep(ctx, 0); err != nil {
			return err
		}
	}
}

// WaitTimeout is Wait with a time limit: wait_event_killable_timeout(). It
// reports whether cond became true.
func (q *WaitQueue) WaitTimeout(ctx context.Context, cond func() bool, timeout time.Duration) (bool, error) {
	MightSleep()
	deadline := time.Now().Add(timeout)
	for {
		t := q.Prepare()
		if cond() {
			t.Finish()
			return true, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Finish()
			return false, nil
		}
		if _, err := t.Sleep(ctx, left); err != nil {
			return false, err
		}
	}
}

// WakeUp wakes every waiter: wake_up_all(). It never sleeps.
func (q *WaitQueue) WakeUp() {
	q.mu.Lock()
	if q.ch != nil {
		close(q.ch)
		q.ch = nil
	}
	q.mu.Unlock()
}

// HasSleepers reports whether anybody holds a ticket for the next WakeUp:
// wq_has_sleeper().
func (q *WaitQueue) HasSleepers() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiters > 0
}

// noCopy makes go vet's copylocks check flag copies.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
