package krules

import "github.com/krules/krules/internal/task"

// SetName names the calling goroutine; reports print it as "name/id", like
// the kernel's comm/pid. An empty name clears it. A named goroutine keeps a
// task record until it clears its name, so a goroutine that names itself
// should clear the name before it returns; Go does that for you.
func SetName(name string) {
	if name == "" {
		if t := task.Lookup(); t != nil {
			t.Name = ""
			t.ReleaseIfEmpty()
		}
		return
	}
	t := task.Current()
	t.Name = name
	t.Publish()
	if task.SweepDue() {
		sweepExited()
	}
}

// sweepExited runs the sweep the task table asked for (task.SweepDue): a
// goroutine that returns named leaves its record behind, and nothing else
// would reclaim it outside tests. The sweep runs on its own goroutine, since
// it dumps every goroutine's stack.
func sweepExited() {
	if task.TakeSweep() {
		go func() {
			defer task.Swept()
			ReapExited()
		}()
	}
}

// Go runs fn in a new goroutine named name, like kthread_run, and clears the
// name when fn returns. A goroutine that returns holding locks is reported
// at once, as do_exit's debug_check_no_locks_held does ("WARNING: NAME/ID
// still has locks held!", kind LocksHeldAtExit), with its own backtrace,
// and its record is dropped then rather than at the next ReapExited; so are
// the notes for an open atomic or non-block section.
func Go(name string, fn func()) {
	go func() {
		SetName(name)
		defer exit()
		fn()
	}()
}

// exit is do_exit for a goroutine started by Go: run as it returns.
func exit() {
	if t := task.Lookup(); t != nil {
		reaping.Lock() // a ReapExited under way may have seen the record
		defer reaping.Unlock()
		exitTask(t, true)
	}
}
