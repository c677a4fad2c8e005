//go:build !krules_nolockdep

package krules_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

func TestGoReportsLocksHeldAtExitAtOnce(t *testing.T) {
	rec := krulestest.Record(t)
	var m lockclass.Mutex
	m.Init()
	ids := make(chan int64, 1)
	krules.Go("leaker", func() {
		ids <- krules.CurrentGoroutine().ID
		m.Lock() // never unlocked: do_exit finds it held
	})
	id := <-ids
	// No ReapExited runs before the test ends: the report comes from the
	// goroutine's own exit.
	require.Eventually(t, func() bool { return rec.Len() > 0 }, 5*time.Second, time.Millisecond)
	require.Equal(t, []krules.Kind{krules.LocksHeldAtExit}, rec.Kinds())
	r := rec.Last()
	who := "leaker/" + strconv.FormatInt(id, 10)
	require.Equal(t, "WARNING: "+who+" still has locks held!", r.Headline)
	require.Contains(t, r.Text, "1 lock held by "+who+":\n #0: ")
	require.Regexp(t, `\(krules/exit_test\.go:\d+\)\{\+\.\+\.\}`, r.Text) // the class of m.Init
	require.NotContains(t, r.Text, "detected by", "the goroutine reports itself")
	require.Contains(t, r.Text, "stack backtrace:")
	require.Equal(t, krules.Goroutine{ID: id, Name: "leaker"}, r.Goroutine)
	require.Zero(t, krules.ReapExited(), "the record went at exit; nothing is reported twice")
	require.Equal(t, 1, rec.Len())
}
