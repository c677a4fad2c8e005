package lockclass

import "github.com/krules/krules/internal/task"

// Off makes the validator ignore the calling goroutine until the matching
// On (lockdep_off); calls nest. Locks taken meanwhile are not tracked.
func Off() {
	if compiledIn {
		t := task.Current()
		t.Lockdep.Off++
		t.Publish() // for -race: a goroutine may return with it off
	}
}

// On ends an Off (lockdep_on).
func On() {
	if !compiledIn {
		return
	}
	if t := task.Lookup(); t != nil && t.Lockdep.Off > 0 {
		t.Lockdep.Off--
		t.ReleaseIfEmpty()
	}
}
