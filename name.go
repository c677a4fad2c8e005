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
// name when fn returns.
func Go(name string, fn func()) {
	go func() {
		SetName(name)
		defer SetName("")
		fn()
	}()
}
