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

// Map.AcquireSharedAt holds the map shared at the site it is given, on the
// whole way (a new class) and on the cached path alike.
func TestMapAcquireSharedAt(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	m := lockclass.NewMap("signalling_map")
	var lines []int
	for range 2 {
		_, _, line, _ := runtime.Caller(0)
		beginSection(m) // line+1
		lines = append(lines, line+1)
		held, known := lockclass.IsHeldType(m, 1)
		require.True(t, held && known, "held shared (read = 1)")
		nonblock.StartAtomic()
		nonblock.MightSleep() // a report with the held-lock list
		nonblock.EndAtomic()
		m.Release()
	}
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.SleepInAtomic}, rec.Kinds())
	for i, r := range rec.Reports() {
		require.Regexp(t, fmt.Sprintf(`\(signalling_map\)\{[^}]*\}-\{0:0\}, at: lockclass_test\.TestMapAcquireSharedAt\+0x[0-9a-f]+ lockclass/map_test\.go:%d\n`, lines[i]), r.Text)
	}
	require.False(t, lockclass.IsHeld(m))
}

// Map.Acquire holds the map exclusively at its caller's site on the whole
// way (a new class), the cached path (the chain is known) and the quick
// tier (the chain is the map's last) alike: Acquire reads the site with the
// goroutine id (task.SiteID).
func TestMapAcquireRecordsCallersSite(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	m := lockclass.NewMap("reclaim_like_map")
	var lines []int
	for range 3 {
		_, _, line, _ := runtime.Caller(0)
		m.Acquire() // line+1
		lines = append(lines, line+1)
		held, known := lockclass.IsHeldType(m, 0)
		require.True(t, held && known, "held exclusively (read = 0)")
		nonblock.StartAtomic()
		nonblock.MightSleep() // a report with the held-lock list
		nonblock.EndAtomic()
		m.Release()
	}
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.SleepInAtomic, krules.SleepInAtomic}, rec.Kinds())
	for i, r := range rec.Reports() {
		require.Regexp(t, fmt.Sprintf(`\(reclaim_like_map\)\{[^}]*\}-\{0:0\}, at: lockclass_test\.TestMapAcquireRecordsCallersSite\+0x[0-9a-f]+ lockclass/map_test\.go:%d\n`, lines[i]), r.Text)
	}
	require.False(t, lockclass.IsHeld(m))
}
