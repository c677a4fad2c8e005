package nonblock_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/nonblock"
)

func TestSemaphoreCounts(t *testing.T) {
	krulestest.Check(t)
	s := nonblock.NewSemaphore(2)
	s.Down()
	require.True(t, s.TryDown())
	require.False(t, s.TryDown(), "down_trylock fails with no unit free")
	s.Up()
	s.Up()
	// up past the initial count is allowed: the count is now 2 again, and
	// a third up makes it 3.
	s.Up()
	for range 3 {
		require.True(t, s.TryDown())
	}
	require.False(t, s.TryDown())
}

func TestSemaphoreZeroValueAndUpWithoutDown(t *testing.T) {
	krulestest.Check(t)
	var s nonblock.Semaphore
	require.False(t, s.TryDown())
	s.Up() // by a goroutine that never called down
	require.True(t, s.TryDown())
}

func TestSemaphoreWaitersAreWokenFIFO(t *testing.T) {
	krulestest.Check(t)
	s := nonblock.NewSemaphore(0)
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Down()
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}()
		// Let waiter i queue before i+1 starts.
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 3 {
		s.Up()
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == i+1 }, time.Second, time.Millisecond)
	}
	wg.Wait()
	require.Equal(t, []int{0, 1, 2}, order)
}

func TestSemaphoreDownContextAndTimeout(t *testing.T) {
	krulestest.Check(t)
	s := nonblock.NewSemaphore(0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, s.DownContext(ctx), context.Canceled, "down_killable's -EINTR")
	start := time.Now()
	require.ErrorIs(t, s.DownTimeout(10*time.Millisecond), context.DeadlineExceeded, "down_timeout's -ETIME")
	require.GreaterOrEqual(t, time.Since(start), 10*time.Millisecond)

	var got atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		got.Store(s.DownTimeout(time.Minute) == nil)
	}()
	time.Sleep(5 * time.Millisecond)
	s.Up()
	<-done
	require.True(t, got.Load())
	require.False(t, s.TryDown(), "the waiter took the unit")
}

// down_interruptible and down_killable take a free unit whatever signal is
// pending: only a down that has to wait looks for one (___down_common).
func TestSemaphoreDownContextTakesAFreeUnitWhenCancelled(t *testing.T) {
	krulestest.Check(t)
	s := nonblock.NewSemaphore(1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, s.DownContext(ctx))
	require.False(t, s.TryDown(), "DownContext took the unit")
	require.ErrorIs(t, s.DownContext(ctx), context.Canceled, "no unit left: -EINTR")
}

// The sleeping downs are might_sleep; down_trylock and up are allowed in an
// atomic section.
func TestSemaphoreDownInAtomicSection(t *testing.T) {
	rec := krulestest.Record(t)
	s := nonblock.NewSemaphore(1)
	nonblock.StartAtomic()
	s.Up()
	require.True(t, s.TryDown())
	require.Empty(t, rec.Kinds())
	s.Down() // a unit is free, but down() might sleep
	nonblock.EndAtomic()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	require.Regexp(t, `^BUG: sleeping function called from invalid context at nonblock/semaphore_test\.go:\d+$`, rec.Last().Headline)

	s.Up()
	s.Up()
	nonblock.Start()
	require.NoError(t, s.DownTimeout(time.Millisecond))
	require.NoError(t, s.DownContext(context.Background()))
	nonblock.End()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.SleepInAtomic, krules.SleepInAtomic}, rec.Kinds())
}
