package mmnotifier

import (
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// MightFault declares that the caller is about to copy to or from mm's
// memory and so may fault, which sleeps and takes mm's mmap_lock for read:
// the kernel's might_fault() (mm/memory.c __might_fault). It is
// might_sleep plus might_lock_read(&mm->mmap_lock), so a copy made in an
// atomic section, or while holding a lock that an mmap_lock holder takes,
// is reported even when every page is present. Goroutines have no current
// mm, so the address space is named; and since krules does not model
// pagefault_disable(), the check always runs.
//
//go:noinline
func (mm *MM) MightFault() {
	nonblock.MightSleep()
	lockclass.MightLockRead(&mm.mmapLock)
}
