package mmnotifier

import (
	"errors"
	"fmt"
)

// ErrNoUserfaultfd is what NewProcess's error wraps when the process cannot
// have a userfaultfd: not Linux, no permission, or a sandbox without the
// syscall. The error's text says which, and what to do.
var ErrNoUserfaultfd = errors.New("mmnotifier: userfaultfd unavailable")

// Process is real memory of this process watched as an address space: an
// anonymous private mapping (a []byte the application and a user-space
// driver share) registered with userfaultfd (fs/userfaultfd.c), whose
// non-cooperative events drive the notifiers of an MM exactly as the
// kernel's munmap, madvise and mremap drive mmu_notifier_invalidate_range_*:
//
//   - madvise(MADV_DONTNEED) (UFFD_EVENT_REMOVE) is a blockable
//     MMU_NOTIFY_CLEAR invalidation under mmap_lock held for reading;
//   - munmap (UFFD_EVENT_UNMAP), and mmap(MAP_FIXED) over mapped pages, a
//     blockable MMU_NOTIFY_UNMAP under mmap_lock held for writing;
//   - mremap (UFFD_EVENT_REMAP) an MMU_NOTIFY_UNMAP of the old range, as
//     move_page_tables does, also under mmap_lock for writing.
//
// Addresses are the real virtual addresses: the mapping is [Addr(),
// Addr()+Len()), and Range.Start, interval bounds and HMMRange bounds are
// in that space. Driver code written against MM runs unchanged on MM():
// Register, Get, InsertInterval, ReadBegin/ReadRetry, and HMMRangeFault,
// which makes missing pages present through the same fault path as a CPU
// touch (hmm_range_fault calling handle_mm_fault) and returns virtual page
// numbers as frame numbers, since user space cannot see real frames. MM()'s
// own modelled mappings are empty: its Mmap, Unmap, Discard and Read do not
// touch this memory.
//
// A first touch of a page (a MISSING fault) stops the touching thread in
// the kernel until the monitor resolves it with the WithPageFault function's
// contents (UFFDIO_COPY) or the zero page (UFFDIO_ZEROPAGE). The monitor is
// a goroutine per process, named "uffd_monitor", on an OS thread of its own
// with the same name, that sleeps in read(2) for the events: the kernel
// wakes it and the read takes an event without Go's scheduler, so a call
// that waits for its event to be read waits for the kernel's round trip
// only. Invalidations for changes made through the process's own methods
// (Madvise, Munmap, Mremap, Mmap) run on the caller, before the syscall,
// so a page a device mirrors is invalidated before the kernel may free it.
// Changes made by anybody else (a library calling madvise directly) are
// only known once the kernel has queued their event, and the kernel waits
// just for the event to be read, not handled: a second goroutine,
// "kworker/uffd", invalidates them as soon as it can, which may be after
// the pages went. Sync waits for it.
//
// A goroutine stopped on a missing page keeps its P: the Go scheduler
// cannot tell a fault from computation. Plain Go code (an index, a
// binary.LittleEndian load) is preempted by signal, but a first touch
// inside copy, append, bytes.Equal or any other runtime or assembly
// function is not: then a garbage collection's stop-the-world waits for
// it forever, and the monitor, stopped too, never resolves the fault: the
// process hangs. The monitor's own thread does not help: it reads the
// fault without a P, but needs one to resolve it, and the stop-the-world
// holds them all. Make pages present first (a plain Go touch, or
// HMMRangeFault) before handing them to such functions. Kernel accesses (a read(2) into the buffer) fail with
// EFAULT when only UFFD_USER_MODE_ONLY was allowed (UserModeOnly).
//
// Close tears the process down as exit_mmap does: the monitor stops, the
// notifiers are released (MM().Exit()) and the memory is unmapped. The
// methods are safe for concurrent use, except Close.
type Process struct {
	_    noCopy
	mm   *MM
	mem  []byte
	base uint64
	fill func(addr uint64, page []byte)
	sys  processSys
}

// ProcessOption configures NewProcess.
type ProcessOption func(*processConfig)

type processConfig struct {
	mmOpts []Option
	fill   func(addr uint64, page []byte)
}

// WithMMOptions passes options to the NewMM that makes the process's
// address space: WithZone for the zone its driver allocates from,
// WithTask to name it. Reclaim is always off: the kernel reclaims this
// memory, not krules.
func WithMMOptions(opts ...Option) ProcessOption {
	return func(c *processConfig) { c.mmOpts = append(c.mmOpts, opts...) }
}

// WithPageFault makes fn the fault path of missing pages: it fills page
// (PageSize bytes, zeroed) with the contents the page at addr will have,
// and the page is mapped with UFFDIO_COPY. Without it missing pages get
// the zero page (UFFDIO_ZEROPAGE), as an anonymous read fault does. fn runs
// on the monitor goroutine, or on a driver's in HMMRangeFault, and must not
// touch the process's memory: a fault there would wait for itself.
func WithPageFault(fn func(addr uint64, page []byte)) ProcessOption {
	return func(c *processConfig) { c.fill = fn }
}

// NewProcess maps length bytes (rounded up to pages) of anonymous memory,
// registers it with a new userfaultfd in MISSING mode with the REMOVE,
// UNMAP and REMAP events, and starts its monitor. Where userfaultfd is
// unavailable the error wraps ErrNoUserfaultfd and says why.
func NewProcess(length uint64, opts ...ProcessOption) (*Process, error) {
	if length == 0 {
		return nil, ErrInvalid
	}
	length = (length + PageSize - 1) &^ (PageSize - 1)
	var cfg processConfig
	for _, o := range opts {
		o(&cfg)
	}
	p := &Process{fill: cfg.fill}
	if err := p.open(length); err != nil {
		return nil, err
	}
	p.mm = NewMM(append(cfg.mmOpts, WithoutReclaim())...)
	p.mm.proc = p
	p.start()
	return p, nil
}

// MM returns the address space whose notifiers the process's events drive.
func (p *Process) MM() *MM { return p.mm }

// Bytes returns the memory. Bytes of pages that are not mapped (after
// Munmap, or the source of Mremap) must not be touched: that is a SIGSEGV.
func (p *Process) Bytes() []byte { return p.mem }

// Addr returns the address of the memory's first byte.
func (p *Process) Addr() uint64 { return p.base }

// Len returns the length of the memory.
func (p *Process) Len() uint64 { return uint64(len(p.mem)) }

// String returns "uffd [0x7f…-0x7f…) of pid:17 (comm)".
func (p *Process) String() string {
	return fmt.Sprintf("uffd [%#x-%#x) of %s", p.base, p.base+p.Len(), p.mm)
}

// Madvise is madvise(MADV_DONTNEED) of [off, off+length): the pages are
// dropped and the next touch faults. It takes mmap_lock for reading, runs
// a blockable MMU_NOTIFY_CLEAR invalidation around the syscall and may
// sleep. Pages not mapped make it fail with ENOMEM, as the syscall does,
// after the mapped ones are dropped. A zero length does nothing.
func (p *Process) Madvise(off, length uint64) error { return p.madvise(off, length) }

// Munmap is munmap of [off, off+length): the pages are no longer mapped
// and must not be touched until Mmap maps them again. It takes mmap_lock
// for writing, runs a blockable MMU_NOTIFY_UNMAP invalidation around the
// syscall and may sleep. Only the mapped pages are unmapped (a munmap for
// each run of them): a hole in the range is free address space, which
// another mapping may have been given since.
func (p *Process) Munmap(off, length uint64) error { return p.munmap(off, length) }

// Mmap maps fresh anonymous memory at [off, off+length) and registers it:
// a hole Munmap or Mremap left becomes usable again. Pages it replaces are
// unmapped first (mmap with MAP_FIXED), with an MMU_NOTIFY_UNMAP
// invalidation. A hole is free address space, which the rest of the
// program may have been given since (the Go runtime maps its own memory
// into free ranges): holes are filled with MAP_FIXED_NOREPLACE, and if one
// is taken Mmap fails with EEXIST and changes nothing. It takes mmap_lock
// for writing.
func (p *Process) Mmap(off, length uint64) error { return p.mmap(off, length) }

// Mremap moves the pages of [from, from+length) to [to, to+length)
// (mremap with MREMAP_MAYMOVE|MREMAP_FIXED): their contents move, what was
// mapped at the destination is unmapped, and the source becomes a hole.
// Both ranges get a blockable MMU_NOTIFY_UNMAP invalidation. The ranges
// must not overlap (EINVAL), and the source must be mapped, by one
// mapping (EFAULT, as mremap(2) says: after Mmap or Mremap the memory is
// several). Holes at the destination are claimed first, as Mmap fills
// them: if one has been taken, Mremap fails with EEXIST and changes
// nothing. It takes mmap_lock for writing.
func (p *Process) Mremap(from, to, length uint64) error { return p.mremap(from, to, length) }

// Sync waits until the monitor has seen every event the process's own
// operations caused (the kernel lets a caller go once the event is read,
// before the monitor looks at it, and sends UNMAP after munmap returns),
// and has handled every event it read so far, including the invalidations
// of changes made behind the process's back. Stats are exact after it.
func (p *Process) Sync() { p.sync() }

// Stats counts what the monitor has seen.
type Stats struct {
	// Faults is the number of missing pages resolved, by the monitor or by
	// HMMRangeFault.
	Faults int64
	// Events is the number of REMOVE, UNMAP and REMAP events read.
	Events int64
	// Foreign is the number of those not caused by the process's own
	// methods, which the monitor invalidated after the fact.
	Foreign int64
}

// Stats returns the counts so far.
func (p *Process) Stats() Stats { return p.stats() }

// UserModeOnly reports whether the userfaultfd handles user-mode faults
// only (UFFD_USER_MODE_ONLY, what an unprivileged process gets with
// vm.unprivileged_userfaultfd=0): a system call that touches a missing page
// fails with EFAULT instead of waiting.
func (p *Process) UserModeOnly() bool { return p.userModeOnly() }

// Close stops the monitor, releases the notifiers (MM().Exit()) and
// unmaps the memory still mapped, not the holes. No other method may run
// concurrently, or after.
func (p *Process) Close() error { return p.close() }

// pageRange validates [off, off+length) within the memory and returns its
// addresses.
func (p *Process) pageRange(off, length uint64) (uint64, uint64, error) {
	end, err := checkRange(off, length)
	if err != nil || end > p.Len() {
		return 0, 0, ErrInvalid
	}
	return p.base + off, p.base + end, nil
}
