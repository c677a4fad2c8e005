package lockclass

import (
	"runtime"

	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/nonblock"
)

// The cond_resched_lock family (kernel/sched/core.c) lets a long walk under
// a spinning lock give the lock and the processor up between steps. Each
// first makes __might_resched's check with the one lock's atomic section
// allowed (PREEMPT_LOCK_OFFSET): a second spinning lock held, or a
// non-block section, is "BUG: sleeping function called from invalid
// context". Then lockdep asserts that the caller holds the lock. Then, if
// another goroutine is spinning on the lock (spin_needbreak and
// rwlock_needbreak, as a preemptible kernel answers them), the lock is
// dropped, the processor yielded and the lock taken again, and the call
// reports true: whatever the lock protects may have changed, and the walk
// must revalidate. Go has no need_resched to ask, so a lock nobody waits
// for is kept and the call reports false, as the kernel's does when
// nothing else wants the CPU. The lock is taken again without a subclass
// or nest lock, as the kernel's spin_lock there.

// CondResched is cond_resched_lock for the SpinLock the caller holds.
//
//go:noinline
func (l *SpinLock) CondResched() bool {
	pc := stack.ReturnPC()
	nonblock.MightResched(1)
	AssertHeld(l)
	if l.spinners.Load() == 0 {
		return false
	}
	l.Unlock()
	runtime.Gosched()
	l.lock(0, nil, pc)
	return true
}

// CondReschedWrite is cond_resched_rwlock_write for the RWLock the caller
// holds for writing.
//
//go:noinline
func (l *RWLock) CondReschedWrite() bool { return l.condResched(true, stack.ReturnPC()) }

// CondReschedRead is cond_resched_rwlock_read for the RWLock the caller
// holds for reading.
//
//go:noinline
func (l *RWLock) CondReschedRead() bool { return l.condResched(false, stack.ReturnPC()) }

func (l *RWLock) condResched(write bool, pc uintptr) bool {
	nonblock.MightResched(1)
	if write {
		AssertHeldWrite(l)
	} else {
		AssertHeldRead(l)
	}
	if !l.contended() {
		return false
	}
	if write {
		l.Unlock()
		runtime.Gosched()
		l.lock(pc)
	} else {
		l.RUnlock()
		runtime.Gosched()
		l.rlock(pc)
	}
	return true
}

// contended is rwlock_is_contended: a reader or a writer is spinning on l.
func (l *RWLock) contended() bool { return l.writers.Load()+l.readers.Load() != 0 }
