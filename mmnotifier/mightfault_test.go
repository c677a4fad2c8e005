//go:build !krules_nolockdep

package mmnotifier_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// might_fault is might_sleep and might_lock_read: a user copy inside a spin
// lock is reported even when nothing faults.
func TestMightFaultInAtomicSection(t *testing.T) {
	mm := newMM(t)
	rec := krulestest.Record(t)
	var l lockclass.SpinLock
	l.Init(lockclass.WithName("&dev->lock"))
	l.Lock()
	mm.MightFault()
	l.Unlock()
	// might_sleep's BUG, then lockdep's for the rwsem in a spin lock.
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.InvalidWaitContext}, rec.Kinds())
	require.Regexp(t, `^BUG: sleeping function called from invalid context at mmnotifier/mightfault_test\.go:\d+$`, rec.Reports()[0].Headline)
	require.Contains(t, rec.Last().Text, "(&mm->mmap_lock)")
}

// might_fault is might_lock_read(&mm->mmap_lock): a copy under a mutex that
// mmap_lock holders take is an inversion, reported without any fault.
func TestMightFaultOrdersAfterMmapLock(t *testing.T) {
	mm := newMM(t)
	rec := krulestest.Record(t)
	var m lockclass.Mutex
	m.Init(lockclass.WithName("&dev->mutex"))
	mm.MmapLock().Lock()
	m.Lock() // mmap_lock -> dev->mutex, as an mmap handler does
	m.Unlock()
	mm.MmapLock().Unlock()
	m.Lock()
	mm.MightFault() // copy_to_user under dev->mutex
	m.Unlock()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "(&mm->mmap_lock)")
}
