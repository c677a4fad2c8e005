package lockclass

import (
	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
)

// downgrade is lock_downgrade: the held write lock m becomes a read (mode
// 1) hold, and the locks above it are re-validated. With nothing held it is
// DEBUG_LOCKS_WARN_ON(!depth); with other locks held but not m, a bad
// unlock balance.
func downgrade(m *Map, pc uintptr) {
	if !compiledIn {
		return
	}
	t := task.Lookup()
	if t == nil || len(t.Lockdep.Held) == 0 {
		// __lock_downgrade checks that anything is held before it looks
		// for the lock: DEBUG_LOCKS_WARN_ON(!depth), which turns
		// debug_locks off as the imbalance report does.
		if m.validating(t) && m.graph().reportable(false) {
			krules.Emit(warnf(krules.LockdepMisuse, "DEBUG_LOCKS_WARN_ON(!depth)"))
		}
		return
	}
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
