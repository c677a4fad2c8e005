package nonblock

import (
	"context"
	"math"
	"sync"
	"time"
	"unsafe"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
)

// Completion is the kernel's struct completion (kernel/sched/completion.c):
// a count of "done" events that waiters consume, one event each. Complete
// adds an event and wakes one waiter; CompleteAll lets every current and
// future waiter through until Reinit. Complete and CompleteAll never sleep
// and may be called in atomic sections; the waits call MightSleep first, so
// a wait in an atomic or non-block section is reported even when it would
// not block. Completions have no lockdep map in v6.12 (the crossrelease
// annotations were removed in 4.15), so the lock validator does not track
// them.
//
// The zero value is an incomplete completion (init_completion). A
// Completion must not be copied after first use.
type Completion struct {
	_       noCopy
	mu      sync.Mutex
	done    uint32 // math.MaxUint32 after CompleteAll (UINT_MAX)
	waiters []chan struct{}
}

// completeAllDone is the kernel's UINT_MAX: complete_all's done.
const completeAllDone = math.MaxUint32

// Complete adds one event and wakes the first waiter: complete(). It does
// not sleep.
func (c *Completion) Complete() {
	c.mu.Lock()
	if c.done != completeAllDone {
		c.done++
	}
	c.wakeLocked(1)
	c.mu.Unlock()
}

// CompleteAll lets every current and future waiter through until Reinit:
// complete_all(). It does not sleep.
func (c *Completion) CompleteAll() {
	c.mu.Lock()
	c.done = completeAllDone
	c.wakeLocked(len(c.waiters))
	c.mu.Unlock()
}

func (c *Completion) wakeLocked(n int) {
	for ; n > 0 && len(c.waiters) > 0; n-- {
		close(c.waiters[0])
		c.waiters[0] = nil
		c.waiters = c.waiters[1:]
	}
	if len(c.waiters) == 0 {
		c.waiters = nil
	}
}

// Reinit makes the completion incomplete again: reinit_completion(), which
// only resets done and checks nothing. A Reinit with waiters queued races
// with their wake-up (Documentation/scheduler/completion.rst warns of it),
// so krules reports it, a WARNING of kind SyncMisuse, where the kernel is
// silent; the waiters keep waiting for the next Complete.
func (c *Completion) Reinit() {
	c.mu.Lock()
	n := len(c.waiters)
	c.done = 0
	c.mu.Unlock()
	if n > 0 {
		krules.Emit(krules.Warn(krules.SyncMisuse, "reinit_completion() with waiters", 1))
	}
}

// Done reports whether a wait would not block: completion_done().
func (c *Completion) Done() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done != 0
}

// TryWait consumes an event if there is one, without sleeping, and reports
// whether it did: try_wait_for_completion(). It may be called in atomic
// sections.
func (c *Completion) TryWait() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.consumeLocked()
}

func (c *Completion) consumeLocked() bool {
	if c.done == 0 {
		return false
	}
	if c.done != completeAllDone {
		c.done--
	}
	return true
}

// Wait waits uninterruptibly for an event and consumes it:
// wait_for_completion().
func (c *Completion) Wait() {
	MightSleep()
	c.wait(context.Background(), nil)
}

// WaitContext waits for an event, or returns ctx.Err() if ctx is done first:
// wait_for_completion_interruptible and _killable, whose -ERESTARTSYS is
// ctx.Err() here.
func (c *Completion) WaitContext(ctx context.Context) error {
	MightSleep()
	if c.wait(ctx, nil) {
		return nil
	}
	return ctx.Err()
}

// WaitTimeout waits at most d for an event: wait_for_completion_timeout().
// Like the kernel's, it returns 0 on timeout and otherwise the time left, at
// least 1ns (the kernel's "at least 1 jiffy").
func (c *Completion) WaitTimeout(d time.Duration) time.Duration {
	MightSleep()
	deadline := time.Now().Add(d)
	tm := time.NewTimer(d)
	defer tm.Stop()
	if !c.wait(context.Background(), tm.C) {
		return 0
	}
	return max(time.Until(deadline), 1)
}

// wait is do_wait_for_common: queue, sleep, and on every wake-up consume an
// event if one is there, even if the wait was cut short meanwhile.
func (c *Completion) wait(ctx context.Context, expire <-chan time.Time) bool {
	c.mu.Lock()
	for {
		if c.consumeLocked() {
			c.mu.Unlock()
			return true
		}
		ch := make(chan struct{})
		c.waiters = append(c.waiters, ch)
		c.mu.Unlock()
		var hw *task.Waiter // the hung-task detector's view (kernel/hung_task.c)
		if task.Tracking() {
			hw = task.BeginWait(unsafe.Pointer(c), 1)
		}
		var cut bool
		select {
		case <-ch:
		case <-ctx.Done():
			cut = true
		case <-expire:
			cut = true
		}
		task.EndWait(hw)
		c.mu.Lock()
		if cut {
			if c.consumeLocked() {
				c.removeLocked(ch)
				c.mu.Unlock()
				return true
			}
			c.removeLocked(ch)
			c.mu.Unlock()
			return false
		}
	}
}

func (c *Completion) removeLocked(ch chan struct{}) {
	for i, w := range c.waiters {
		if w == ch {
			c.waiters = append(c.waiters[:i:i], c.waiters[i+1:]...)
			return
		}
	}
}
