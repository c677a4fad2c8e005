package lockclass

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// queued counts the waiters queued on c.
func (c *core) queued() int {
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

// A writer that gives up its killable wait lets the readers queued behind
// it in when only readers hold the semaphore: on the way out of
// rwsem_down_write_slow_path, rwsem_del_wake_waiter wakes the waiters behind
// the removed first waiter (rwsem_mark_wake), so they do not wait for the
// holders to leave.
func TestKilledWriterLetsTheReadersBehindItIn(t *testing.T) {
	var c core
	require.True(t, c.tryRLock())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	werr := make(chan error, 1)
	go func() { werr <- c.lock(ctx, nil) }()
	require.Eventually(t, func() bool { return c.queued() == 1 }, 10*time.Second, time.Millisecond)
	read := make(chan struct{})
	go func() {
		c.rlock(nil, nil) //nolint:errcheck // no context, cannot fail
		close(read)
	}()
	require.Eventually(t, func() bool { return c.queued() == 2 }, 10*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-werr, context.Canceled)
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		c.runlock() // let the reader in, so that it ends
		<-read
		c.runlock()
		t.Fatal("the reader queued behind the killed writer still waits while only readers hold it")
	}
	require.True(t, c.runlock())
	require.True(t, c.runlock())
	require.False(t, c.locked())
}

// readers counts the read holds of c.
func (c *core) readers() int64 { return c.state.Load() / cReader }

// queueReaders starts n goroutines that take the read side of c and
// waits until all n are queued; done is closed when all of them hold it.
func queueReaders(t *testing.T, c *core, n int) (done chan struct{}) {
	done = make(chan struct{})
	var held atomic.Int64
	base := c.queued()
	for range n {
		go func() {
			c.rlock(nil, nil) //nolint:errcheck // no context, cannot fail
			if held.Add(1) == int64(n) {
				close(done)
			}
		}()
	}
	require.Eventually(t, func() bool { return c.queued() == base+n }, 10*time.Second, time.Millisecond)
	return done
}

// A writer's release wakes every reader queued, also those queued behind
// another writer, which stays queued (rwsem_mark_wake skips the writers
// in the wait list).
func TestWriterReleaseWakesTheReadersPastAQueuedWriter(t *testing.T) {
	var c core
	require.True(t, c.tryLock())
	r1 := queueReaders(t, &c, 1)
	werr := make(chan error, 1)
	go func() { werr <- c.lock(nil, nil) }()
	require.Eventually(t, func() bool { return c.queued() == 2 }, 10*time.Second, time.Millisecond)
	r3 := queueReaders(t, &c, 1)
	require.True(t, c.unlock())
	require.Eventually(t, func() bool { return c.queued() == 1 }, 10*time.Second, time.Millisecond, "only the writer still waits")
	<-r1
	<-r3
	require.EqualValues(t, 2, c.readers())
	require.True(t, c.runlock())
	require.True(t, c.runlock()) // the last reader hands over to the writer
	require.NoError(t, <-werr)
	require.True(t, c.unlock())
	require.False(t, c.locked())
}

// One wake-up grants at most MAX_READERS_WAKEUP (256) read locks
// (rwsem_mark_wake); the readers beyond it wait for the next wake-up.
func TestOneWakeupGrantsAtMost256Readers(t *testing.T) {
	var c core
	require.True(t, c.tryLock())
	first := queueReaders(t, &c, maxReaderWake)
	last := queueReaders(t, &c, 1)
	require.True(t, c.unlock())
	<-first
	require.EqualValues(t, maxReaderWake, c.readers())
	require.Equal(t, 1, c.queued(), "the 257th reader waits")
	for range maxReaderWake {
		require.True(t, c.runlock())
	}
	<-last // the last of the 256 woke it
	require.True(t, c.runlock())
	require.False(t, c.locked())
}

// Unlocking the write side of a semaphore that is not write-locked is
// detected (reported false) and leaves the state alone, with or without
// waiters, so that the caller can report it instead of corrupting the lock.
func TestUnlockOfANotWriteLockedCoreIsDetected(t *testing.T) {
	var c core
	require.False(t, c.unlock())
	require.False(t, c.locked())
	require.True(t, c.tryRLock())
	require.False(t, c.unlock())
	require.EqualValues(t, 1, c.readers())
	ctx, cancel := context.WithCancel(context.Background())
	werr := make(chan error, 1)
	go func() { werr <- c.lock(ctx, nil) }()
	require.Eventually(t, func() bool { return c.queued() == 1 }, 10*time.Second, time.Millisecond)
	require.False(t, c.unlock(), "a queued writer does not make it write-locked")
	require.EqualValues(t, 1, c.readers())
	cancel()
	require.ErrorIs(t, <-werr, context.Canceled)
	require.True(t, c.runlock())
	require.False(t, c.locked())
}
