//go:build !krules_nolockdep

package lockclass

import (
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/nonblock"
)

// Lock locks m: mutex_lock.
//
//go:noinline
func (m *Mutex) Lock() {
	if !compiledIn || !enabled.Load() {
		m.core.lock(nil)
		return
	}
	// acquire's cached path, inline.
	id, pc := task.SiteID()
	if id == 0 {
		id = task.ID()
	}
	t := task.ClaimHead(id)
	if t == nil {
		t = task.Claim(id)
	}
	if t.NonBlock|t.Preempt != 0 {
		nonblock.MightSleep()
	}
	// The cached path's two commonest cases inline, then the rest.
	c := m.dep.cache[0].Load()
	if headCached(t, c, 0) {
		pushQuick(t, &m.dep, c, 0, false, pc, c.modes[0].headKey)
	} else if key, ok := memoCached(t, &m.dep, c, 0); ok {
		pushQuick(t, &m.dep, c, 0, false, pc, key)
	} else if !pushCached(t, &m.dep, c, 0, false, pc) {
		t = acquireSlow(t, &m.dep, 0, 0, fSleep, nil, pc, mutexDefaults)
	}
	if !m.core.tryLock() {
		m.core.lockSlow(nil, true)
	}
	m.own.set(t)
}

// Unlock unlocks m: mutex_unlock. Unlocking a mutex the goroutine does not
// hold is reported as a bad unlock balance and, if it was not locked at
// all, leaves it alone.
func (m *Mutex) Unlock() {
	if compiledIn && m.own.id != 0 {
		// The cached path: the caller is the owner and m is on top.
		id := task.GoID()
		if id == 0 {
			id = task.ID()
		}
		if t := m.own.t; m.own.id == id && popTop(t, &m.dep) {
			m.own.id = 0 // the stale t is never read without the id
			t.ReleaseIfEmpty()
			m.core.unlock()
			return
		}
		m.own.release(&m.dep)
	} else if compiledIn && enabled.Load() && !m.core.wlocked() {
		releaseShared(&m.dep) // not locked: a double unlock
	}
	m.core.unlock()
}
