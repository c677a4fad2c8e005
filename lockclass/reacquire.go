package lockclass

import (
	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
)

// rebuild re-acquires entries on top of the stack after the one below them
// went away or changed (reacquire_held_locks): each goes through the whole
// acquisition again, so the new sequences are validated. Entries the
// validator no longer follows are pushed back as they are, so the held-lock
// list stays true.
func rebuild(t *task.Task, entries []task.HeldLock) []*krules.Report {
	var reps []*krules.Report
	for _, e := range entries {
		c := (*class)(e.Class)
		prev := t.Lockdep.ChainKey
		if len(t.Lockdep.Held) == 0 {
			prev = 0
		}
		key := chainKeyMix(prev, c.modes[e.Read].id)
		act := aPush
		if c.state.Load()&(stStale|stOff) == 0 && enabled.Load() && t.Lockdep.Off == 0 {
			var rep *krules.Report
			rep, act, key = c.g.lockAcquire(t, &e, false)
			if rep != nil {
				reps = append(reps, rep)
			}
		}
		e.PrevChainKey = prev
		if act != aMerged {
			t.Lockdep.Held = append(t.Lockdep.Held, e)
			t.Lockdep.ChainKey = key
		}
	}
	return reps
}
