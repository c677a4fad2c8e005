package krules

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/internal/splat"
	"github.com/krules/krules/internal/task"
)

// khungtaskd's checks on a clock of the test's: a wait is reported once it
// has lasted the timeout, then again each timeout while it lasts
// (check_hung_task finds it hung at every check, the interval defaulting
// to the timeout), N growing; a wait that ended and one that started
// later are apart; the tenth report says that future ones are suppressed,
// and there is no eleventh.
func TestHungTaskCheckCadenceAndWarnings(t *testing.T) {
	const timeout = 120 * time.Second
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := newHungTaskCheck(timeout)
	w := &task.Waiter{ID: 7, Name: "stuck", Start: t0}
	headlines := func(rs []*Report) (hs []string) {
		for _, r := range rs {
			require.Equal(t, HungTask, r.Kind)
			hs = append(hs, r.Headline)
		}
		return hs
	}
	at := func(d time.Duration, ws ...*task.Waiter) []string { return headlines(h.check(t0.Add(d), ws)) }

	require.Empty(t, at(timeout-time.Millisecond, w), "shorter than the timeout")
	// check_hung_task returns early only while
	// time_is_after_jiffies(last_switch_time + timeout * HZ): blocked for
	// exactly the timeout, the task is hung.
	require.Equal(t, []string{"INFO: task stuck:7 blocked for more than 120 seconds."}, at(timeout, w))
	require.Empty(t, at(timeout+timeout/4, w))
	require.Empty(t, at(2*timeout-time.Millisecond, w), "less than a timeout since its report")
	require.Equal(t, []string{"INFO: task stuck:7 blocked for more than 240 seconds."}, at(2*timeout, w))

	// The wait ends; the goroutine's next wait starts its own count.
	require.Empty(t, at(2*timeout+2*time.Second))
	again := &task.Waiter{ID: 7, Name: "stuck", Start: t0.Add(3 * timeout)}
	require.Empty(t, at(4*timeout-time.Millisecond, again))
	require.Equal(t, []string{"INFO: task stuck:7 blocked for more than 120 seconds."}, at(4*timeout, again))
	require.Equal(t, 7, h.warnings)

	// Seven warnings left; nine waits long enough: seven reports, the
	// seventh the last, and nothing after.
	var ws []*task.Waiter
	for i := range 9 {
		ws = append(ws, &task.Waiter{ID: int64(100 + i), Name: fmt.Sprint("w", i), Start: t0})
	}
	rs := h.check(t0.Add(10*timeout), ws)
	require.Len(t, rs, 7)
	for i, r := range rs {
		require.Equal(t, ws[i].ID, r.Goroutine.ID)
		// hung_task_info's order: the trace, the suppression notice, then
		// debug_show_all_locks (an empty inline with CONFIG_LOCKDEP=n).
		notice := " </TASK>\nFuture hung task reports are suppressed, see sysctl kernel.hung_task_warnings\n"
		if task.ConfigLockdep {
			notice += "\nShowing all locks held in the system:\n"
		} else {
			require.NotContains(t, r.Text, "Showing all locks", "report %d", i)
		}
		require.Equal(t, i == 6, strings.Contains(r.Text, notice), "report %d", i)
	}
	require.Empty(t, h.check(t0.Add(20*timeout), ws))
	_, kept := h.reported[w]
	require.False(t, kept, "an ended wait is forgotten")
}

// A goroutine that was never named is reported under the function it
// started in, as reports name it elsewhere: the kernel's comm.
func TestHungTaskReportNamesAnUnnamedWaiterByItsEntry(t *testing.T) {
	pcs := make([]uintptr, 32)
	pcs = pcs[:runtime.Callers(1, pcs)]
	w := &task.Waiter{ID: 9, Start: time.Unix(0, 0), Stack: pcs}
	rs := newHungTaskCheck(time.Second).check(time.Unix(2, 0), []*task.Waiter{w})
	require.Len(t, rs, 1)
	require.Equal(t, "INFO: task TestHungTaskReportNamesAnUnnamedWaiterByItsEntry:9 blocked for more than 2 seconds.", rs[0].Headline)
	require.Equal(t, pcs, rs[0].Stack, "the hung goroutine's stack, not the detector's")
	// sched_show_task's comm is TASK_COMM_LEN-1 characters; a task without
	// locks is not in debug_show_all_locks' list.
	require.Contains(t, rs[0].Text, "\ntask:TestHungTaskRep state:D stack:0     pid:9     tgid:1     ppid:0      flags:0x00000000\n")
	// check_hung_task's second line is print_tainted() then the release;
	// sched_show_task's trace is framed by show_trace_log_lvl's <TASK>.
	lines := strings.Split(rs[0].Text, "\n")
	require.Equal(t, "      "+splat.TaintRelease(), lines[1])
	require.Regexp(t, `\nCall Trace:\n <TASK>\n krules\.TestHungTaskReportNamesAnUnnamedWaiterByItsEntry\+0x[0-9a-f]+ krules/hungtask_internal_test\.go:\d+\n( .*\n)* </TASK>\n`, rs[0].Text)
	if task.ConfigLockdep {
		require.True(t, strings.HasSuffix(rs[0].Text, "\nShowing all locks held in the system:\n\n=============================================\n\n"), rs[0].Text)
	} else {
		// CONFIG_LOCKDEP=n: debug_show_all_locks prints nothing, so the
		// report ends with the trace.
		require.True(t, strings.HasSuffix(rs[0].Text, " </TASK>\n"), rs[0].Text)
	}
}

// Waits are recorded only while a detector runs: stopping the last one
// stops the recording.
func TestStoppingTheHungTaskDetectorStopsTrackingWaits(t *testing.T) {
	require.False(t, task.Tracking())
	stop := StartHungTaskDetector(time.Hour)
	require.True(t, task.Tracking())
	stop()
	require.False(t, task.Tracking())
}
