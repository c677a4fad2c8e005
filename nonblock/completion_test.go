package nonblock_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/nonblock"
)

func TestCompletionCountsEvents(t *testing.T) {
	krulestest.Check(t)
	var c nonblock.Completion
	require.False(t, c.Done())
	require.False(t, c.TryWait())
	c.Complete()
	c.Complete()
	require.True(t, c.Done())
	require.True(t, c.TryWait())
	c.Wait() // the second event: no blocking
	require.False(t, c.Done())
	require.Equal(t, time.Duration(0), c.WaitTimeout(5*time.Millisecond), "timeout returns 0")
}

func TestCompletionCompleteWakesOneWaiter(t *testing.T) {
	krulestest.Check(t)
	var c nonblock.Completion
	woke := make(chan int, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Wait()
			woke <- i
		}()
	}
	time.Sleep(10 * time.Millisecond)
	c.Complete()
	<-woke
	select {
	case <-woke:
		t.Fatal("complete() woke two waiters")
	case <-time.After(20 * time.Millisecond):
	}
	c.Complete()
	<-woke
	wg.Wait()
	require.False(t, c.Done())
}

func TestCompletionCompleteAllUntilReinit(t *testing.T) {
	krulestest.Check(t)
	var c nonblock.Completion
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); c.Wait() }()
	}
	time.Sleep(10 * time.Millisecond)
	c.CompleteAll()
	wg.Wait()
	// Future waiters pass too, and consume nothing.
	c.Wait()
	require.True(t, c.TryWait())
	require.Greater(t, c.WaitTimeout(time.Second), time.Duration(0))
	require.NoError(t, c.WaitContext(context.Background()))
	require.True(t, c.Done())
	c.Reinit()
	require.False(t, c.Done())
}

func TestCompletionWaitContext(t *testing.T) {
	krulestest.Check(t)
	var c nonblock.Completion
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, c.WaitContext(ctx), context.DeadlineExceeded)
	// The withdrawn waiter does not swallow the next event.
	c.Complete()
	require.True(t, c.TryWait())
}

// complete() is allowed in an atomic section; the waits are might_sleep
// even when an event is there.
func TestCompletionWaitInAtomicSection(t *testing.T) {
	rec := krulestest.Record(t)
	var c nonblock.Completion
	nonblock.StartAtomic()
	c.Complete()
	c.Complete()
	require.True(t, c.TryWait())
	require.True(t, c.Done())
	require.Empty(t, rec.Kinds())
	c.Wait()
	nonblock.EndAtomic()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	require.Regexp(t, `^BUG: sleeping function called from invalid context at nonblock/completion_test\.go:\d+$`, rec.Last().Headline)
}

// reinit_completion with a waiter queued is a WARNING; the waiter keeps
// waiting and the next complete() wakes it.
func TestCompletionReinitWithWaiters(t *testing.T) {
	rec := krulestest.Record(t)
	var c nonblock.Completion
	done := make(chan struct{})
	go func() { defer close(done); c.Wait() }()
	time.Sleep(10 * time.Millisecond)
	c.Reinit()
	require.Equal(t, []krules.Kind{krules.SyncMisuse}, rec.Kinds())
	require.Regexp(t, `^WARNING: CPU: - PID: \d+ at nonblock/completion_test\.go:\d+ nonblock_test\.TestCompletionReinitWithWaiters\+0x`, rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "reinit_completion() with waiters")
	select {
	case <-done:
		t.Fatal("reinit woke the waiter")
	case <-time.After(10 * time.Millisecond):
	}
	c.Complete()
	<-done
}

// complete() after complete_all() keeps the completion done for everyone
// (done stays UINT_MAX), and a successful wait_for_completion_timeout
// returns at least 1 however late the event was seen.
func TestCompletionCompleteAfterCompleteAllAndTimeoutsOfOne(t *testing.T) {
	krulestest.Check(t)
	var c nonblock.Completion
	c.CompleteAll()
	c.Complete()
	for range 5 {
		require.True(t, c.TryWait())
	}
	require.True(t, c.Done())

	var d nonblock.Completion
	d.Complete()
	require.Equal(t, time.Duration(1), d.WaitTimeout(0), "an event there: at least 1, even with no time left")
	require.Zero(t, d.WaitTimeout(0), "no event: 0")
}

// complete() wakes one waiter, and the event is that waiter's even if its
// wait was cut short at the same moment (do_wait_for_common consumes an
// event it finds on waking): otherwise the next waiter, not woken, would
// sleep with the event unclaimed. Run many times, since which of the two
// the first waiter sees first is the scheduler's choice.
func TestCompletionEventGoesToTheWokenWaiterEvenIfCut(t *testing.T) {
	krulestest.Check(t)
	for range 30 {
		var c nonblock.Completion
		ctx, cancel := context.WithCancel(context.Background())
		first, second := make(chan error, 1), make(chan struct{})
		go func() { first <- c.WaitContext(ctx) }()
		time.Sleep(time.Millisecond)
		go func() { c.Wait(); close(second) }()
		time.Sleep(time.Millisecond)
		cancel()
		c.Complete()
		if err := <-first; err == nil { // the first waiter took the event
			select {
			case <-second:
				t.Fatal("two waiters through on one complete()")
			case <-time.After(5 * time.Millisecond):
			}
			c.Complete()
		}
		select {
		case <-second:
		case <-time.After(5 * time.Second):
			t.Fatal("the event went to nobody: the second waiter was not woken")
		}
		require.False(t, c.Done())
	}
}

// A wait cut short (timeout, context) leaves the wait list, as
// do_wait_for_common's __remove_wait_queue does: a reinit_completion()
// afterwards has nobody waiting to warn about, and the next complete() goes
// to the next waiter rather than to the one that left.
func TestCompletionCutWaitLeavesTheWaitList(t *testing.T) {
	krulestest.Check(t)
	var c nonblock.Completion
	require.Zero(t, c.WaitTimeout(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	require.ErrorIs(t, c.WaitContext(ctx), context.DeadlineExceeded)
	c.Reinit() // nobody waits: no warning

	ids, done := make(chan int64, 1), make(chan struct{})
	go func() {
		ids <- task.ID()
		c.Wait()
		close(done)
	}()
	id := <-ids
	stop := make(chan struct{})
	defer close(stop)
	require.True(t, waitState(id, "select", stop), "the waiter queues")
	c.Complete()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.CompleteAll()
		<-done
		t.Fatal("complete() woke a waiter that had left instead of the one waiting")
	}
}

// complete() wakes the waiter at the head of the wait list, the one that
// queued first (swake_up_locked), and only that one: waiters get the
// events in the order they queued.
func TestCompletionWakesWaitersInQueueOrder(t *testing.T) {
	krulestest.Check(t)
	for range 5 {
		var c nonblock.Completion
		woke := make(chan int, 3)
		stop := make(chan struct{})
		for i := range 3 {
			ids := make(chan int64, 1)
			go func() {
				ids <- task.ID()
				c.Wait()
				woke <- i
			}()
			require.True(t, waitState(<-ids, "select", stop), "waiter %d queues", i)
		}
		close(stop)
		for i := range 3 {
			c.Complete()
			select {
			case got := <-woke:
				require.Equal(t, i, got, "the event goes to the waiter that queued first")
			case <-time.After(5 * time.Second):
				t.Fatal("complete() woke nobody")
			}
		}
		require.False(t, c.Done())
	}
}

// A waiter that leaves the middle of the wait list takes only itself out
// (__remove_wait_queue): the waiters queued behind it still get their
// complete().
func TestCompletionCutWaitKeepsTheWaitersBehindIt(t *testing.T) {
	krulestest.Check(t)
	var c nonblock.Completion
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	woke, cut := make(chan int, 2), make(chan error, 1)
	for i := range 3 {
		ids := make(chan int64, 1)
		go func() {
			ids <- task.ID()
			if i == 1 {
				cut <- c.WaitContext(ctx)
				return
			}
			c.Wait()
			woke <- i
		}()
		require.True(t, waitState(<-ids, "select", stop), "waiter %d queues", i)
	}
	cancel()
	require.ErrorIs(t, <-cut, context.Canceled)
	for _, want := range []int{0, 2} {
		c.Complete()
		select {
		case got := <-woke:
			require.Equal(t, want, got)
		case <-time.After(5 * time.Second):
			c.CompleteAll()
			t.Fatalf("complete() did not reach waiter %d", want)
		}
	}
}

// Every wait is might_sleep, even when the completion is done and it
// would not block (wait_for_completion*() call might_sleep() first).
func TestCompletionEveryWaitMightSleep(t *testing.T) {
	rec := krulestest.Record(t)
	var c nonblock.Completion
	c.CompleteAll()
	nonblock.StartAtomic()
	c.Wait()
	require.NoError(t, c.WaitContext(context.Background()))
	require.NotZero(t, c.WaitTimeout(time.Second))
	nonblock.EndAtomic()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.SleepInAtomic, krules.SleepInAtomic}, rec.Kinds())
	for _, r := range rec.Reports() {
		require.Regexp(t, `^BUG: sleeping function called from invalid context at nonblock/completion_test\.go:\d+$`, r.Headline)
	}
}
