package krules

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/krules/krules/internal/lineage"
	"github.com/krules/krules/internal/splat"
	"github.com/krules/krules/internal/task"
)

// DefaultHungTaskTimeout is CONFIG_DEFAULT_HUNG_TASK_TIMEOUT, the kernel's
// default hung_task_timeout_secs.
const DefaultHungTaskTimeout = 120 * time.Second

// hungTaskWarnings is hung_task_warnings: reports one detector makes at most.
const hungTaskWarnings = 10

// StartHungTaskDetector starts khungtaskd (kernel/hung_task.c): a goroutine
// that reports every goroutine sleeping on a krules primitive (a lock, a
// WWMutex, a WaitQueue and so a mempool, a Completion, a Semaphore, a
// fence, a grace period) for timeout or longer (DefaultHungTaskTimeout if
// timeout is 0), with kind HungTask:
//
//	INFO: task NAME:ID blocked for more than N seconds.
//
// followed by its stack and, as with lockdep, every held lock in the system
// (ShowAllLocks), the owners of the lock it waits for first (the kernel
// prints that list once, after the reports of one check), or only "INFO:
// lockdep is turned off." once the default validator has turned itself
// off, or nothing after the trace when built with -tags krules_nolockdep
// (CONFIG_LOCKDEP=n). As the
// kernel's check_hung_task, it reports a goroutine that stays blocked again
// each timeout (the kernel finds it hung again at every check, whose
// interval defaults to the timeout), N growing, and makes at most 10
// reports (hung_task_warnings), the last of which says "Future hung task
// reports are suppressed". It checks four times a timeout, so a wait is
// first reported between 1 and 1.25 timeouts in. Waits are recorded only
// while a detector runs. stop stops it and returns once its goroutine has;
// package krulestest starts one for a test (DetectHungTasks) with a timeout
// that ends before the test's deadline.
func StartHungTaskDetector(timeout time.Duration) (stop func()) {
	if timeout <= 0 {
		timeout = DefaultHungTaskTimeout
	}
	task.TrackWaits(true)
	quit, done := make(chan struct{}), make(chan struct{})
	go khungtaskd(timeout, quit, done)
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			<-done
			task.TrackWaits(false)
		})
	}
}

func khungtaskd(timeout time.Duration, quit, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(max(timeout/4, time.Millisecond))
	defer tick.Stop()
	h := newHungTaskCheck(timeout)
	for {
		select {
		case <-quit:
			return
		case now := <-tick.C:
			for _, r := range h.check(now, task.Waiters()) {
				Emit(r)
			}
		}
	}
}

// hungTaskCheck is what khungtaskd keeps between its checks.
type hungTaskCheck struct {
	timeout  time.Duration
	warnings int                        // hung_task_warnings left
	reported map[*task.Waiter]time.Time // when each wait was last reported
}

func newHungTaskCheck(timeout time.Duration) *hungTaskCheck {
	return &hungTaskCheck{timeout: timeout, warnings: hungTaskWarnings, reported: map[*task.Waiter]time.Time{}}
}

// check is check_hung_uninterruptible_tasks at time now over ws, the waits
// under way, longest first: it returns a report for each wait of the
// timeout or longer that was not reported in the last timeout, while
// warnings last. The kernel reports a task at every check that finds it
// still blocked (task_is_hung keeps last_switch_time while the task does
// not run), one check interval apart; the interval defaults to the timeout,
// and this detector, which checks more often so as to report sooner, keeps
// that cadence per wait. The report that uses the last warning says so, as
// hung_task_info does. Waits that ended are forgotten.
func (h *hungTaskCheck) check(now time.Time, ws []*task.Waiter) []*Report {
	var out []*Report
	live := make(map[*task.Waiter]bool, len(ws))
	for _, w := range ws {
		live[w] = true
		// check_hung_task returns early only while
		// time_is_after_jiffies(last_switch_time + timeout * HZ): a task
		// blocked for exactly the timeout is hung.
		if h.warnings == 0 || now.Sub(w.Start) < h.timeout {
			continue
		}
		if last, ok := h.reported[w]; ok && now.Sub(last) < h.timeout {
			continue
		}
		h.reported[w] = now
		h.warnings--
		out = append(out, hungTaskReport(w, ws, now, h.warnings == 0))
	}
	for w := range h.reported {
		if !live[w] {
			delete(h.reported, w)
		}
	}
	return out
}

func waiterWho(w *task.Waiter) (comm, who string) {
	comm = w.Name
	if comm == "" {
		comm = splat.EntryName(w.Stack)
	}
	return comm, fmt.Sprintf("%s/%d", comm, w.ID)
}

// hungTaskReport is hung_task_info's report for w at time now; all are the
// waits under way, and last says that it used the last warning.
func hungTaskReport(w *task.Waiter, all []*task.Waiter, now time.Time, last bool) *Report {
	comm, _ := waiterWho(w)
	secs := int64(now.Sub(w.Start) / time.Second)
	b := NewReport(HungTask, fmt.Sprintf("INFO: task %s:%d blocked for more than %d seconds.", comm, w.ID, secs), 1)
	b.r.Goroutine = Goroutine{ID: w.ID, Name: comm}
	b.r.Stack = w.Stack
	b.Printf("%s\n", b.r.Headline)
	// check_hung_task's second line: print_tainted(), then the release
	// (the reverse of a lockdep headline's identity line).
	b.Printf("      %s\n", splat.TaintRelease())
	b.Printf("\"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\" disables this message.\n")
	// sched_show_task's line as v6.12 prints it. A goroutine has no stack
	// left unused to count nor thread flags (0 both); its thread group's
	// leader is the main goroutine, and its parent the goroutine that
	// created it, 0 once that has gone (!pid_alive).
	b.Printf("task:%-15.15s state:D stack:%-5d pid:%-5d tgid:%-5d ppid:%-6d flags:0x%08x\n", comm, 0, w.ID, 1, lineage.Live()[w.ID], 0)
	splat.CallTrace(&b.Builder, w.Stack)
	if last {
		b.WriteString("Future hung task reports are suppressed, see sysctl kernel.hung_task_warnings\n")
	}
	// v6.12 names no blocker (the "likely owned by" line is
	// CONFIG_DETECT_HUNG_TASK_BLOCKER's, v6.15): debug_show_all_locks,
	// which check_hung_uninterruptible_tasks calls once the tasks are
	// shown, is where the owner appears, and this report lists the owners
	// of the awaited lock first so that it is found at once.
	var owners, rest []*task.Waiter
	for _, o := range all {
		if o != w && w.On != nil && o.Holds(w.On) {
			owners = append(owners, o)
		} else {
			rest = append(rest, o)
		}
	}
	showLocks(&b.Builder, append(owners, rest...), nil)
	return b.Report()
}

// ShowAllLocks writes every held lock in the system the way
// debug_show_all_locks prints it (SysRq-d): "Showing all locks held in the
// system:", then "N locks held by NAME/ID:" and the locks of each goroutine
// holding any. The goroutines are the caller and those waiting on a krules
// primitive (their lists are copied as they begin to wait, and only while a
// hung-task detector runs): the lists of running goroutines change under a
// reader, which the kernel tolerates and Go's memory model does not.
// Once the default validator has turned itself off (the kernel's
// debug_locks is 0: a report was made), it writes only "INFO: lockdep is
// turned off.", as debug_show_all_locks does; lockclass.Off and
// lockclass.SetEnabled do not change what it writes. Built with -tags
// krules_nolockdep (CONFIG_LOCKDEP=n) it writes nothing, since
// debug_show_all_locks is an empty inline there.
func ShowAllLocks(w io.Writer) error {
	var b strings.Builder
	showLocks(&b, task.Waiters(), task.Lookup())
	_, err := io.WriteString(w, b.String())
	return err
}

func showLocks(b *strings.Builder, ws []*task.Waiter, self *task.Task) {
	// CONFIG_LOCKDEP=n: debug_show_all_locks is an empty inline.
	if !task.ConfigLockdep {
		return
	}
	// debug_show_all_locks reads debug_locks alone: once a report has
	// turned lockdep off the lists are no longer trusted. lockdep_off()
	// (current->lockdep_recursion) does not silence it.
	if !task.DebugLocks() {
		b.WriteString(task.LockdepOff)
		return
	}
	b.WriteString("\nShowing all locks held in the system:\n")
	if self != nil && len(self.Lockdep.Held) > 0 {
		task.FormatHeldLocks(b, self, fmt.Sprintf("%s/%d", commOf(self), self.ID))
	}
	for _, w := range ws {
		if len(w.Held) == 0 || self != nil && w.ID == self.ID {
			continue
		}
		_, who := waiterWho(w)
		t := task.Task{}
		t.Lockdep.Held = w.Held
		task.FormatHeldLocks(b, &t, who)
	}
	b.WriteString("\n=============================================\n\n")
}
