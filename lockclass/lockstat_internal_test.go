//go:build !krules_nolockdep

package lockclass

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// lock_stat counts where the kernel counts: an rwsem whose trylock fails
// counts a contention even if it then takes the lock without sleeping
// (LOCK_CONTENDED in down_write), a mutex only once spinning has failed and
// it queues (lock_contended in __mutex_lock_common), so a mutex that steals
// the lock counts none. The lock is left free with the first waiter woken
// and not yet running (its queue is not needed for a steal), which makes
// the trylock fail and the steal succeed.
func TestLockStatCountsContentionsWhereTheKernelDoes(t *testing.T) {
	defer SetLockStat(SetLockStat(true))
	v := NewValidator()
	var s RWSem
	var m Mutex
	s.Init(WithValidator(v), WithName("stolen_rwsem"))
	m.Init(WithValidator(v), WithName("stolen_mutex"))
	for _, l := range []struct {
		c            *core
		lock, unlock func()
	}{{&s.core, s.Lock, s.Unlock}, {&m.core, m.Lock, m.Unlock}} {
		l.c.state.Store(cWaiters | cWoken)
		l.lock()
		require.Equal(t, int64(cWriter|cWaiters|cWoken), l.c.state.Load(), "stolen")
		l.unlock()
		l.c.state.Store(0)
	}
	contentions := map[string]int64{}
	for _, r := range v.LockStats() {
		contentions[r.Class] += r.Contentions
	}
	require.Equal(t, map[string]int64{"stolen_rwsem": 1, "stolen_mutex": 0}, contentions)
}
