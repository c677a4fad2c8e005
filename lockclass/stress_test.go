//go:build !krules_nolockdep

package lockclass_test

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// Many goroutines, many classes, real contention. First every goroutine
// takes locks in one global class order: no report. Then some goroutines
// announce the reverse order (MightLock, so nothing really deadlocks) while
// the rest keep locking: exactly one report, validation turns off, and the
// locks keep excluding each other (no lost update) with no record left
// behind. Run it with -race.
func TestStressManyGoroutinesManyClasses(t *testing.T) {
	const (
		classes    = 16
		perClass   = 3
		goroutines = 24
		rounds     = 400
	)
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	type guarded struct {
		mu lockclass.Mutex
		rw lockclass.RWSem
		n  int
	}
	var keys, rwKeys [classes]*lockclass.Key
	for c := range classes {
		keys[c], rwKeys[c] = registeredKey(), registeredKey()
	}
	locks := make([][]*guarded, classes)
	for c := range locks {
		for range perClass {
			g := new(guarded)
			g.mu.Init(lockclass.WithValidator(v), lockclass.WithKey(keys[c]), lockclass.WithName("mu"))
			g.rw.Init(lockclass.WithValidator(v), lockclass.WithKey(rwKeys[c]), lockclass.WithName("rw"))
			locks[c] = append(locks[c], g)
		}
	}
	var increments atomic.Int64
	work := func(seed uint64, inverse bool) {
		r := rand.New(rand.NewPCG(seed, 1))
		for range rounds {
			// 1-3 distinct classes in increasing order.
			var picked []*guarded
			for c := r.IntN(classes); c < classes && len(picked) < 3; c += 1 + r.IntN(4) {
				picked = append(picked, locks[c][r.IntN(perClass)])
			}
			if inverse && len(picked) > 1 && r.IntN(8) == 0 {
				last := picked[len(picked)-1]
				last.mu.Lock()
				lockclass.MightLock(&picked[0].mu) // the reverse order
				last.mu.Unlock()
				continue
			}
			var reader *guarded
			for i, g := range picked {
				if i == 0 && r.IntN(2) == 0 {
					g.rw.RLock()
					reader = g
				}
				g.mu.Lock()
			}
			for _, g := range picked {
				g.n++
				increments.Add(1)
			}
			for i := len(picked) - 1; i >= 0; i-- {
				picked[i].mu.Unlock()
			}
			if reader != nil {
				reader.rw.RUnlock()
			}
		}
	}
	run := func(inverse func(i int) bool) {
		var wg sync.WaitGroup
		for i := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				work(uint64(i), inverse(i))
			}()
		}
		wg.Wait()
	}
	run(func(int) bool { return false })
	require.Zero(t, rec.Len(), "one global order: nothing to report")
	require.True(t, v.Enabled())
	run(func(i int) bool { return i%4 == 0 })
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds(), "the first report, then validation is off")
	require.False(t, v.Enabled())

	total := 0
	for _, cl := range locks {
		for _, g := range cl {
			total += g.n
			require.False(t, g.mu.IsLocked())
			require.False(t, g.rw.IsLocked())
		}
	}
	require.EqualValues(t, increments.Load(), total, "mutual exclusion held throughout")
	require.Zero(t, task.Len(), "no task record left behind")
}
