//go:build krules_nolockdep

package lockclass

// Lock locks m: mutex_lock. Validation is compiled out: a plain lock,
// small enough to be inlined like sync.Mutex.Lock.
func (m *Mutex) Lock() {
	if !m.core.state.CompareAndSwap(0, cWriter) {
		m.core.lockSlow(nil, true)
	}
}

// Unlock unlocks m: mutex_unlock. Validation is compiled out; unlocking an
// unlocked mutex is ignored.
func (m *Mutex) Unlock() {
	if !m.core.state.CompareAndSwap(cWriter, 0) {
		m.core.unlockSlow()
	}
}
