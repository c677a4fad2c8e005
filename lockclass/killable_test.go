package lockclass_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// grantThenCancel is a context whose Done, which a killable wait asks for
// once it has queued and before it sleeps, first has the holder release the
// lock (handing it to the queued waiter) and then cancels: the waiter finds
// the grant and the cancellation both there when it looks.
type grantThenCancel struct {
	context.Context
	cancel  context.CancelFunc
	release func()
	once    sync.Once
}

func (c *grantThenCancel) Done() <-chan struct{} {
	c.once.Do(func() { c.release(); c.cancel() })
	return c.Context.Done()
}

// raceGrantWithCancel holds a lock with hold, runs wait (a killable wait
// for it) on another goroutine with a grantThenCancel context, has the
// holder release it with unhold when the waiter is queued, and returns what
// wait returned; a waiter that got the lock releases it with drop.
func raceGrantWithCancel(hold, unhold func(), wait func(context.Context) error, drop func()) error {
	hold()
	inner, cancel := context.WithCancel(context.Background())
	defer cancel()
	releaseNow, released := make(chan struct{}), make(chan struct{})
	ctx := &grantThenCancel{Context: inner, cancel: cancel, release: func() {
		close(releaseNow)
		<-released
	}}
	errc := make(chan error)
	go func() {
		err := wait(ctx)
		if err == nil {
			drop()
		}
		errc <- err
	}()
	<-releaseNow
	unhold()
	close(released)
	return <-errc
}

// A killable wait that is handed the lock just as its context is done
// keeps the lock and succeeds: rwsem_down_read_slowpath breaks out with the
// lock when it finds waiter.task cleared under wait_lock before out_nolock,
// and rwsem_down_write_slowpath and __mutex_lock_common try the lock before
// they look at the signal. Each round gives the waiter's select both cases
// ready, so a wait that gave the grant up would be caught within a few.
func TestKillableWaitKeepsAGrantThatRacedTheCancel(t *testing.T) {
	krulestest.Check(t)
	var s lockclass.RWSem
	var m lockclass.Mutex
	cases := []struct {
		name         string
		hold, unhold func()
		wait         func(context.Context) error
		drop         func()
	}{
		{"down_read_killable", s.Lock, s.Unlock, s.RLockKillable, s.RUnlock},
		{"down_write_killable", s.Lock, s.Unlock, s.LockKillable, s.Unlock},
		{"mutex_lock_killable", m.Lock, m.Unlock, m.LockKillable, m.Unlock},
	}
	for _, c := range cases {
		for round := range 32 {
			require.NoError(t, raceGrantWithCancel(c.hold, c.unhold, c.wait, c.drop), "%s, round %d", c.name, round)
		}
	}
	require.False(t, s.IsLocked())
	require.False(t, m.IsLocked())
}
