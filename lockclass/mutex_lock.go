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
	id, pc := task.SiteID()
	if id == 0 {
		id = task.ID()
	}
	// Uncontended, the lock is taken first and the cached path annotated
	// after: nothing blocked, and a cached chain has nothing to report.
	// m.own.t, stable now that m is ours, is the last holder's record: a
	// guess at ours that spares the table walk.
	tried := false // the cached path, with the lock held
	if m.core.tryLock() {
		t := m.own.t
		if t == nil || !t.Reclaim(id) {
			if t = task.ClaimHead(id); t == nil {
				t = task.Claim(id)
			}
			m.own.t = t // the guess for next time; m.own.id says whether it holds
		}
		if t.NonBlock|t.Preempt == 0 {
			// The cached path's quick tiers inline, then the rest of it.
			c := m.dep.cache[0].Load()
			key, ok := c.headKeyIfCached(t, 0)
			if !ok {
				key, ok = memoCached(t, &m.dep, c, 0)
			}
			if ok {
				pushQuick(t, &m.dep, c, 0, false, pc, key)
			} else {
				ok = pushCached(t, &m.dep, c, 0, false, pc) // still nothing to report
			}
			tried = true
			if ok {
				m.own.id = id
				return
			}
		}
		// Not the quick case: give the lock back and go the whole way,
		// annotating first as lock_acquire does.
		t.ReleaseIfEmpty()
		m.core.unlock()
	}
	t := task.Claim(id)
	if t.NonBlock|t.Preempt != 0 {
		nonblock.MightSleep()
	}
	if tried || !pushCached(t, &m.dep, m.dep.cache[0].Load(), 0, false, pc) {
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
			m.own.id = 0 // t stays: the next Lock's guess at its record
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
