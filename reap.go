package krules

import (
	"fmt"
	"sync"

	"github.com/krules/krules/internal/lineage"
	"github.com/krules/krules/internal/splat"
	"github.com/krules/krules/internal/task"
)

// reaping serialises ReapExited: parallel tests end concurrently, and a
// record must be reaped once.
var reaping sync.Mutex

// ReapExited finds the task records of goroutines that have returned and
// drops them, so that nothing leaks, as the kernel's do_exit tidies a task
// up. A goroutine that returned holding locks is reported first, as
// debug_check_no_locks_held does ("WARNING: NAME/ID still has locks held!",
// kind LocksHeldAtExit); one that returned inside an atomic or non-block
// section gets do_exit's note ("note: NAME[ID] exited with preempt_count N",
// and likewise non_block_count). A goroutine that returned named (SetName)
// is reclaimed silently.
//
// It dumps every goroutine's stack (runtime.Stack(all)), so it is for the
// end of a test (package krulestest calls it) or an occasional sweep, not a
// hot path. It returns the number of records reclaimed.
func ReapExited() int {
	reaping.Lock()
	defer reaping.Unlock()
	// Records first, live goroutines second: a goroutine missing from a
	// snapshot taken after its record was seen has returned (ids are never
	// reused), while one that took its record after the snapshot would look
	// dead. Owner, not ID: the owners of live records are still writing them.
	type seen struct {
		t  *task.Task
		id int64
	}
	var records []seen
	task.Each(func(t *task.Task) bool {
		records = append(records, seen{t, t.Owner()})
		return true
	})
	if len(records) == 0 {
		return 0
	}
	live := lineage.Live()
	var dead []*task.Task
	for _, r := range records {
		if _, alive := live[r.id]; r.id > 0 && !alive && r.t.Owner() == r.id {
			dead = append(dead, r.t)
		}
	}
	for _, t := range dead {
		exitTask(t, false)
	}
	return len(dead)
}

// exitTask is do_exit's tidying of the record of a goroutine that has
// returned: debug_check_no_locks_held, the preempt_count and non_block_count
// notes, then the record is dropped. self says the goroutine is the caller,
// at its own exit (Go), rather than found dead by ReapExited.
func exitTask(t *task.Task, self bool) {
	if len(t.Lockdep.Held) > 0 {
		reportHeldAtExit(t, self)
	}
	// kernel/exit.c do_exit: pr_info("note: %s[%d] exited with
	// preempt_count %d\n", ...); non_block_count gets the same note.
	if t.Preempt > 0 {
		Logf("note: %s[%d] exited with preempt_count %d", commOf(t), t.ID, t.Preempt)
	}
	if t.NonBlock > 0 {
		Logf("note: %s[%d] exited with non_block_count %d", commOf(t), t.ID, t.NonBlock)
	}
	task.Reap(t)
}

// reportHeldAtExit is lockdep's debug_check_no_locks_held for a goroutine
// that has returned: at its own exit (self, the backtrace is its own, as
// do_exit's) or found dead by the caller.
func reportHeldAtExit(t *task.Task, self bool) {
	who := fmt.Sprintf("%s/%d", commOf(t), t.ID)
	b := NewReport(LocksHeldAtExit, fmt.Sprintf("WARNING: %s still has locks held!", who), 2)
	splat.Header(&b.Builder, b.r.Headline)
	if !self {
		b.Printf("%s returned (detected by %s)\n", who, b.Who())
	}
	task.FormatHeldLocks(&b.Builder, t, who)
	b.Backtrace()
	r := b.Report()
	r.Goroutine = Goroutine{ID: t.ID, Name: commOf(t)}
	Emit(r)
}

func commOf(t *task.Task) string {
	if t.Name != "" {
		return t.Name
	}
	return "goroutine"
}
