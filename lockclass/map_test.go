//go:build !krules_nolockdep

package lockclass_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// beginSection is an annotation helper in the manner of
// dma_fence_begin_signalling: it takes the map for its caller.
//
//go:noinline
func beginSection(m *lockclass.Map) { m.AcquireSharedAt(stack.ReturnPC()) }

// A map is held at the site its acquisition names: Map.AcquireSharedAt
// (read = 1) at the site it is given, Map.Acquire (read = 0) at its
// caller's, which it reads with the goroutine id (task.SiteID). Each way is
// taken three times: the whole way (a new class), the cached path (the
// chain is known) and the quick tier (the chain is the map's last).
func TestMapAcquisitionRecordsItsSite(t *testing.T) {
	for _, tc := range []struct {
		name    string
		read    int
		acquire func(*lockclass.Map)
	}{
		{"signalling_map", 1, beginSection},
		{"reclaim_like_map", 0, (*lockclass.Map).Acquire},
		{"notifier_like_map", 0, (*lockclass.Map).AcquireMightSleep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			krulestest.ResetDefault(t)
			rec := krulestest.Record(t)
			m := lockclass.NewMap(tc.name)
			var lines []int
			for range 3 {
				_, _, line, _ := runtime.Caller(0)
				tc.acquire(m) // line+1
				lines = append(lines, line+1)
				held, known := lockclass.IsHeldType(m, tc.read)
				require.True(t, held && known, "%s held with read = %d", tc.name, tc.read)
				nonblock.StartAtomic()
				nonblock.MightSleep() // a report with the held-lock list
				nonblock.EndAtomic()
				m.Release()
			}
			require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.SleepInAtomic, krules.SleepInAtomic}, rec.Kinds())
			for i, r := range rec.Reports() {
				require.Regexp(t, fmt.Sprintf(`\(%s\)\{[^}]*\}-\{0:0\}, at: lockclass_test\.TestMapAcquisitionRecordsItsSite\.func1\+0x[0-9a-f]+ lockclass/map_test\.go:%d\n`, tc.name, lines[i]), r.Text)
			}
			require.False(t, lockclass.IsHeld(m))
		})
	}
}

// AcquireMightSleep is might_sleep() and then Acquire: in a non-block or
// atomic section it reports the sleep, at the caller's line, and holds the
// map all the same; outside one it only holds the map. Its quick tier and
// the whole way (ids unknown, validation off) agree.
func TestAcquireMightSleepReportsInSectionsAndHolds(t *testing.T) {
	for _, tc := range []struct {
		name           string
		start, end     func()
		inAtomic       string
		validationOnly bool
	}{
		{"outside", func() {}, func() {}, "", false},
		{"non-block", nonblock.Start, nonblock.End, "in_atomic(): 0, irqs_disabled(): 0, non_block: 1", false},
		{"atomic", nonblock.StartAtomic, nonblock.EndAtomic, "in_atomic(): 1, irqs_disabled(): 0, non_block: 0", false},
		{"atomic, validation off", nonblock.StartAtomic, nonblock.EndAtomic, "in_atomic(): 1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bothIDWays(t, func(t *testing.T) {
				krulestest.ResetDefault(t)
				rec := krulestest.Record(t)
				m := lockclass.NewMap("notifier_like_map")
				if tc.validationOnly {
					defer lockclass.SetEnabled(lockclass.SetEnabled(false))
				}
				for range 3 { // the whole way, then the cached path, then the quick tier
					tc.start()
					_, _, line, _ := runtime.Caller(0)
					m.AcquireMightSleep() // line+1
					if !tc.validationOnly {
						require.True(t, lockclass.IsHeld(m))
					}
					m.Release()
					tc.end()
					if tc.inAtomic == "" {
						require.Zero(t, rec.Len())
						continue
					}
					require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
					r := rec.Last()
					require.Equal(t, fmt.Sprintf("BUG: sleeping function called from invalid context at lockclass/map_test.go:%d", line+1), r.Headline)
					require.Contains(t, r.Text, tc.inAtomic)
					rec.Clear()
				}
				if !tc.validationOnly { // with validation off every lock reads as held
					require.False(t, lockclass.IsHeld(m))
				}
			})
		})
	}
}

// A strong path reaches a class that a recursive read reached first: the
// search must still leave it through a shared edge. Here next -(ER)-> X is
// found before next -(EN)-> Y -(EN)-> X, and X -(SN)-> prev is strong only
// after the second: prev then next closes a real cycle. (The kernel marks a
// class visited on its first reach, so with these lists in this order its
// check_noncircular misses it; krules keeps the two reaches apart.)
func TestStrongPathThroughAClassFirstReachedByARecursiveRead(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	next, x, y, prev := lockclass.NewMap("next"), lockclass.NewMap("X"), lockclass.NewMap("Y"), lockclass.NewMap("prev")
	pair := func(a func(), b func(), release ...*lockclass.Map) {
		a()
		b()
		for _, m := range release {
			m.Release()
		}
	}
	pair(next.Acquire, x.AcquireRead, x, next) // next -(ER)-> X, first on next's list
	pair(next.Acquire, y.Acquire, y, next)     // next -(EN)-> Y
	pair(y.Acquire, x.Acquire, x, y)           // Y -(EN)-> X
	pair(x.AcquireRead, prev.Acquire, prev, x) // X -(SN)-> prev
	require.Zero(t, rec.Len())
	pair(prev.Acquire, next.Acquire, next, prev) // prev -> next: next -> Y -> X -> prev is strong
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "(Y)")
}
