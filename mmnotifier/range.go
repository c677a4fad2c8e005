package mmnotifier

import (
	"errors"
	"fmt"
	"syscall"
)

// Event says why a range is being invalidated: the kernel's enum
// mmu_notifier_event, in the kernel's order.
type Event uint8

const (
	// EventUnmap is MMU_NOTIFY_UNMAP: munmap or mremap; the range is gone.
	EventUnmap Event = iota
	// EventClear is MMU_NOTIFY_CLEAR: page table entries are cleared
	// (madvise(MADV_DONTNEED), reclaim, a page being replaced).
	EventClear
	// EventProtectionVMA is MMU_NOTIFY_PROTECTION_VMA: mprotect changed the
	// whole range's access permissions.
	EventProtectionVMA
	// EventProtectionPage is MMU_NOTIFY_PROTECTION_PAGE: the read/write flag
	// of individual pages changed.
	EventProtectionPage
	// EventSoftDirty is MMU_NOTIFY_SOFT_DIRTY: soft-dirty tracking was reset.
	EventSoftDirty
	// EventRelease is MMU_NOTIFY_RELEASE: the address space is being torn
	// down (interval notifiers only).
	EventRelease
	// EventMigrate is MMU_NOTIFY_MIGRATE: pages are being migrated; Owner is
	// the device-private owner, so a driver can skip its own migrations.
	EventMigrate
	// EventExclusive is MMU_NOTIFY_EXCLUSIVE: a device takes exclusive
	// access to a page; Owner is the caller.
	EventExclusive
)

var eventNames = [...]string{
	EventUnmap:          "MMU_NOTIFY_UNMAP",
	EventClear:          "MMU_NOTIFY_CLEAR",
	EventProtectionVMA:  "MMU_NOTIFY_PROTECTION_VMA",
	EventProtectionPage: "MMU_NOTIFY_PROTECTION_PAGE",
	EventSoftDirty:      "MMU_NOTIFY_SOFT_DIRTY",
	EventRelease:        "MMU_NOTIFY_RELEASE",
	EventMigrate:        "MMU_NOTIFY_MIGRATE",
	EventExclusive:      "MMU_NOTIFY_EXCLUSIVE",
}

// String returns the kernel's name, such as "MMU_NOTIFY_UNMAP".
func (e Event) String() string {
	if int(e) < len(eventNames) {
		return eventNames[e]
	}
	return fmt.Sprintf("MMU_NOTIFY_%d", e)
}

// Range flags: MMU_NOTIFIER_RANGE_BLOCKABLE, the kernel's only one, and
// two of krules's own, which pair each start with its end: started is set
// by a start that ran and cleared by its end, so an end without a start is
// caught instead of unbalancing the interval tree's count; refused marks a
// range a start refused (start >= end), whose end is then a no-op.
const (
	rangeBlockable = 1 << iota
	rangeStarted
	rangeRefused
)

// Range is struct mmu_notifier_range: the span of an address space being
// invalidated, [Start, End), and why. The invalidation functions set the
// blockable flag; callbacks read it with Blockable.
//
// A Range is passed to callbacks by pointer and must stay unchanged from
// InvalidateRangeStart to InvalidateRangeEnd. Code that invalidates often
// should reuse one Range per goroutine: a callback's interface call makes a
// fresh one escape to the heap.
type Range struct {
	// MM is the address space.
	MM *MM
	// Start and End delimit the range; End is exclusive.
	Start, End uint64
	// Event says why the range is invalidated.
	Event Event
	// Owner identifies who asked, for EventMigrate and EventExclusive (the
	// kernel's owner pointer); nil otherwise. Drivers compare it with
	// their own device to ignore their own migrations.
	Owner any

	flags uint8
}

// NewRange returns a range of mm for an invalidation of [start, end) caused
// by event: mmu_notifier_range_init. Whether it is blockable is decided by
// the function that starts the invalidation.
func NewRange(mm *MM, event Event, start, end uint64) Range {
	return Range{MM: mm, Start: start, End: end, Event: event}
}

// NewRangeOwner is NewRange with an owner: mmu_notifier_range_init_owner.
func NewRangeOwner(mm *MM, event Event, start, end uint64, owner any) Range {
	return Range{MM: mm, Start: start, End: end, Event: event, Owner: owner}
}

// Blockable reports whether callbacks may sleep for this range:
// mmu_notifier_range_blockable. When it is false they run inside a
// non-block section and must return ErrAgain rather than wait.
func (r *Range) Blockable() bool { return r.flags&rangeBlockable != 0 }

// String describes the range as "[0x1000-0x3000) MMU_NOTIFY_UNMAP blockable".
func (r *Range) String() string {
	b := "non-blockable"
	if r.Blockable() {
		b = "blockable"
	}
	return fmt.Sprintf("[%#x-%#x) %s %s", r.Start, r.End, r.Event, b)
}

// ErrAgain is the Go spelling of -EAGAIN: what InvalidateRangeStart returns
// when the range is not blockable and the notifier would have to sleep (a
// TryLock that failed, say). It is syscall.EAGAIN, so errors.Is matches
// either.
var ErrAgain error = syscall.EAGAIN

// ErrBusy is -EBUSY: HMMRangeFault's answer when an invalidation collided
// with the walk (mmu_interval_check_retry fired); the caller starts over
// with a fresh ReadBegin.
var ErrBusy error = syscall.EBUSY

// ErrFault is -EFAULT: an access to an address with no mapping, or without
// the permission asked for (the SIGSEGV of a CPU access), or a fault
// HMMRangeFault asked for that cannot be completed (hmm_vma_fault turns
// every VM_FAULT_ERROR, VM_FAULT_OOM included, into -EFAULT).
var ErrFault error = syscall.EFAULT

// ErrPerm is -EPERM: HMMRangeFault asked to fault a page in for writing
// in a mapping without PROT_WRITE.
var ErrPerm error = syscall.EPERM

// ErrInvalid is -EINVAL: a misaligned or empty range, a migration over
// addresses that are not all mapped, or an operation on an address space
// with no users left.
var ErrInvalid error = syscall.EINVAL

// ErrOverflow is -EOVERFLOW: an interval whose end wraps around, or a
// Get whose user count would overflow.
var ErrOverflow error = syscall.EOVERFLOW

// errnoOf returns the negative errno a kernel callback would have returned
// for err, for the failure log line, and whether err has one.
func errnoOf(err error) (int, bool) {
	var e syscall.Errno
	if errors.As(err, &e) {
		return -int(e), true
	}
	return 0, false
}
