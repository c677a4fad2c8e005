package lockclass

import (
	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
)

// downgrade is lock_downgrade: the held write lock m becomes a read (mode
// 1) hold, and the locks above it are re-validated.
func downgrade(m *Map, pc uintptr) {
	if !compiledIn {
		return
	}
	t := task.Lookup()
	i := findHeld(t, m)
	if i < 0 {
		if m.validating(t) && m.graph().reportable(false) {
			krules.Emit(unlockBalanceReport(m))
		}
		return
	}
	held := t.Lockdep.Held
	var reps []*krules.Report
	if held[i].Read != 0 && m.validating(t) {
		reps = append(reps, warnf(krules.LockdepMisuse, "downgrading a read lock"))
	}
	above := append([]task.HeldLock(nil), held[i:]...)
	above[0].Read = 1
	above[0].Site = pc
	t.Lockdep.ChainKey = held[i].PrevChainKey
	truncateHeld(t, i)
	reps = append(reps, rebuild(t, above)...)
	emitAll(reps)
}
