package lockclass

import (
	"context"
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
