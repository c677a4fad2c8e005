package gfp

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/splat"
	"github.com/krules/krules/lockclass"
)

// bad_page's limit on a clock of the test's: 60 reports, then quiet until a
// minute after the first of them (not after the last, nor after the first
// quiet one); the first report after says how many were quiet, and starts
// a new burst whose minute runs from it.
func TestBadPageLimitBurstAndMinute(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var l badPageLimit
	at := func(d time.Duration) (bool, int) { return l.allow(t0.Add(d)) }
	for i := range 60 {
		show, n := at(time.Duration(i) * time.Second / 2)
		require.True(t, show, "report %d", i)
		require.Zero(t, n)
	}
	for _, d := range []time.Duration{30 * time.Second, 40 * time.Second, time.Minute - time.Nanosecond} {
		show, _ := at(d)
		require.False(t, show, "at %v", d)
	}
	show, n := at(time.Minute) // time_before(jiffies, resume) no longer
	require.True(t, show)
	require.Equal(t, 3, n)
	for i := range 59 {
		show, n := at(time.Minute + time.Duration(i)*time.Millisecond)
		require.True(t, show, "report %d of the second burst", i)
		require.Zero(t, n)
	}
	show, _ = at(2*time.Minute - time.Nanosecond)
	require.False(t, show, "the second burst's minute runs from its first report")
	show, n = at(2 * time.Minute)
	require.True(t, show)
	require.Equal(t, 1, n)
	show, n = at(3 * time.Minute)
	require.True(t, show, "a burst that did not fill keeps no one quiet")
	require.Zero(t, n)
}

// The report after a quiet spell opens with bad_page's "messages
// suppressed" line and carries the count; a quiet bad page is not
// emitted, yet taints (add_taint runs either way).
func TestBadPageQuietAndSuppressedLine(t *testing.T) {
	c := krules.OpenClaim(nil)
	defer c.Close()
	z := quietZone(t)
	p, err := z.AllocPages(1, Kernel)
	require.NoError(t, err)
	defer z.FreePages(p, 1)
	tail := z.PageByPFN(p.PFN() + 1)

	z.badPages = badPageLimit{shown: badPageBurst, resume: time.Now().Add(time.Hour)}
	splat.ResetTaint()
	t.Cleanup(lockclass.Default().ResetWithRestore())
	z.FreePages(tail, 0)
	require.Zero(t, c.Len())
	require.Equal(t, splat.TaintBadPage, splat.Tainted(), "bad_page taints B even when it prints nothing")
	require.False(t, lockclass.Default().Enabled(), "and lock debugging goes off (LOCKDEP_NOW_UNRELIABLE)")
	require.Equal(t, 1, z.badPages.unshown)

	z.badPages = badPageLimit{shown: badPageBurst, unshown: 3, resume: time.Now().Add(-time.Second)}
	lockclass.Default().Reset()
	z.FreePages(tail, 0)
	require.Equal(t, 1, c.Len())
	require.False(t, lockclass.Default().Enabled(), "a printed bad page turns lock debugging off too")
	r := c.Last()
	require.Equal(t, krules.BadPage, r.Kind)
	require.Equal(t, 3, r.Suppressed)
	require.Regexp(t, `^BUG: Bad page state: 3 messages suppressed\nBUG: Bad page state in process \S+  pfn:[0-9a-f]{5,}\n`, r.Text)
	require.Equal(t, 1, z.badPages.shown)
	require.Zero(t, z.badPages.unshown)
}
