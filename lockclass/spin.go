package lockclass

import "runtime"

// Optimistic spinning: mutex_optimistic_spin and rwsem_optimistic_spin
// (kernel/locking/mutex.c, rwsem.c). A writer that finds the lock taken
// polls it for a while before it queues, and a first waiter that has set
// the handoff bit polls for the hand-over before it sleeps again: the
// holder of a sleeping lock is usually running and about to release it, and
// a goroutine that parks pays for the park, the wake-up and the time until
// it is scheduled again.
//
// The kernel spins while the owner is on a CPU (mutex_spin_on_owner,
// owner_on_cpu) and stops when the spinner should reschedule. Go cannot see
// whether a goroutine is running, so the spin is bounded instead, by
// spinPolls polls of the lock word with a PAUSE between them (cpu_relax;
// the runtime's procyield), and there is no spinning at all with
// GOMAXPROCS 1, where the holder cannot run while the spinner does.
// Spinners take turns, as the kernel's optimistic spin queue (osq_lock)
// makes them: one polls the lock word while the next polls the queue, so
// two spinners do not bounce the lock's cache line between them.

// spinPolls bounds a spin at about the price of the sleep it tries to
// avoid, so that a spin that fails at most doubles the wait (the classic
// competitive bound): on an AMD EPYC (Zen 3, KVM) a PAUSE takes 26 ns, a
// park and wake-up between two goroutines on one P about 170 ns, and this
// core's own queueing, wake-up and yield about as much again, so 16 polls
// (0.42 µs here; about 0.6 µs where PAUSE takes 140 cycles, Intel since
// Skylake). 32 polls made the 2-goroutine figure worse on the shared
// 2-vCPU machine, where the holder's thread is often not running while the
// spinner's is (median ratio 2.0-2.65 over three series of 4-7 runs,
// against 1.9-2.0 with 8 or 16 polls; noisy). spinPause is the PAUSEs
// between two polls: one, as cpu_relax() in the kernel's spin loops.
const (
	spinPolls = 16
	spinPause = 1
)

// spin polls for the lock to be free of holders and of a pending handoff,
// and takes it: the stealing of mutex_optimistic_spin's
// __mutex_trylock_or_owner and rwsem_try_write_lock_unqueued.
func (c *core) spin() bool {
	if runtime.GOMAXPROCS(0) == 1 {
		return false
	}
	osq := &c.queue().osq
	i := 0
	for !(osq.Load() == 0 && osq.CompareAndSwap(0, 1)) {
		if i++; i >= spinPolls {
			return false
		}
		procyield(spinPause)
	}
	for ; i < spinPolls; i++ {
		procyield(spinPause)
		if c.trySteal() {
			osq.Store(0)
			return true
		}
	}
	osq.Store(0)
	return false
}

// spinGranted polls for the hand-over a first waiter with the handoff bit
// set is due: mutex_optimistic_spin with a waiter (the first waiter spins
// outside the spin queue), rwsem_spin_on_owner once handoff_set.
func (c *core) spinGranted(w *waiter) bool {
	if runtime.GOMAXPROCS(0) == 1 {
		return false
	}
	for range spinPolls {
		procyield(spinPause)
		if w.granted.Load() {
			return true
		}
	}
	return false
}
