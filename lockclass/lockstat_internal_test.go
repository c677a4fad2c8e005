//go:build !krules_nolockdep

package lockclass

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// snprint_time: microseconds with two decimals, rounded at the 5 ns
// before the cut.
func TestStatTimeRoundsAsSnprintTime(t *testing.T) {
	for ns, want := range map[int64]string{
		0: "0.00", 4: "0.00", 5: "0.01", 15: "0.02", 994: "0.99", 995: "1.00",
		1234994: "1234.99", 1234995: "1235.00",
	} {
		require.Equal(t, want, statTime(ns), "%d ns", ns)
	}
}

// A row of /proc/lock_stat from known figures: seq_lock_time's count, min,
// max, total and average (total/nr), waits then holds, in microseconds.
func TestWriteLockStatRowFromKnownTimes(t *testing.T) {
	prev := SetLockStat(true)
	defer SetLockStat(prev)
	v := NewValidator()
	var m Mutex
	m.Init(WithValidator(v), WithName("known_lock"))
	m.Lock()
	m.Unlock()
	var c *class
	g := v.graph()
	g.mu.Lock()
	for _, x := range g.classes {
		if x != nil && x.name == "known_lock" {
			c = x
		}
	}
	g.mu.Unlock()
	require.NotNil(t, c)
	c.stat.clear()
	c.stat.hold[0].add(1000)
	c.stat.hold[0].add(3000)
	c.stat.hold[0].add(2500)
	c.stat.wait[0].add(500)
	var b strings.Builder
	require.NoError(t, v.WriteLockStat(&b))
	// 6500/3 = 2166 ns: 2.17 after snprint_time's rounding.
	require.Contains(t, b.String(), "\n                              known_lock:             0"+
		"              1           0.50           0.50           0.50           0.50"+
		"              0"+
		"              3           1.00           3.00           6.50           2.17\n")
}
