//go:build krules_nolockdep

package lockclass

import (
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/nonblock"
)

// Lock locks m: mutex_lock. Validation is compiled out: a plain lock,
// small enough to be inlined like sync.Mutex.Lock.
func (m *Mutex) Lock() {
	if !m.core.state.CompareAndSwap(0, cWriter) {
		m.core.lockSlow(nil, true, &m.dep)
	}
}

// Unlock unlocks m: mutex_unlock. Validation is compiled out; unlocking an
// unlocked mutex is ignored.
func (m *Mutex) Unlock() {
	if !m.core.state.CompareAndSwap(cWriter, 0) {
		m.core.unlockSlow()
	}
}

// RLock takes the read side: down_read. Validation is compiled out.
func (s *RWSem) RLock() {
	if !s.core.tryRLock() {
		s.core.lockSlow(nil, false, &s.dep)
	}
}

// RUnlock releases a read hold: up_read. Validation is compiled out.
func (s *RWSem) RUnlock() { s.core.runlock() }

// pushCached is the cached path of acquire, which returns before it when
// validation is compiled out.
func pushCached(*task.Task, *Map, *class, uint8, bool, uintptr) bool { return false }

// quickKey and pushQuick are the quick tiers, which validation compiled
// out never reaches.
func quickKey(*task.Task, *Map, *class, uint8, int32) (uint64, bool) { return 0, false }
func pushQuick(*task.Task, *Map, *class, uint8, uintptr, uint64)     {}

// uncheckedQuick, uncheckedKey and stampQuick are rcu_read_lock's
// unchecked quick tier, which validation compiled out never reaches.
func uncheckedQuick(*task.Task, *class) bool        { return false }
func uncheckedKey(*task.Task, *class, uint8) uint64 { return 0 }
func stampQuick(*task.Task)                         {}

// Acquire takes the map exclusively: lock_map_acquire. Validation is
// compiled out.
func (m *Map) Acquire() { m.acquireShared(0, 0, 0) }

// AcquireMightSleep is might_sleep() followed by Acquire. Validation is
// compiled out; might_sleep is not.
func (m *Map) AcquireMightSleep() {
	nonblock.MightSleep()
	m.acquireShared(0, 0, 0)
}

// AcquireShared takes the map shared but not recursive:
// lock_acquire_shared. Validation is compiled out.
func (m *Map) AcquireShared() { m.acquireShared(1, 0, 0) }

// acquireQuick is AcquireShared's way in read mode read, at site pc.
// Validation is compiled out.
func (m *Map) acquireQuick(read uint8, pc uintptr) { m.acquireShared(read, 0, pc) }

// Release drops the map: lock_map_release. Validation is compiled out.
func (m *Map) Release() { releaseShared(m) }

// acquireNested, pushNested, pushNestQuick and releaseNested are cached
// paths, which validation compiled out never reaches.
func acquireNested(*task.Task, *Map, *Map, uintptr) bool            { return false }
func pushNested(*task.Task, *Map, *class, *Map, uintptr) bool       { return false }
func pushNestQuick(*task.Task, *Map, *class, *Map, uintptr, uint64) {}
func releaseNested(*task.Task, *Map) bool                           { return false }
