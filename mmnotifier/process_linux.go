package mmnotifier

import (
	"errors"
	"iter"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/krules/krules"
)

// processSys is the Linux half of a Process: the descriptor, the
// bookkeeping of which pages are mapped, the operations in flight and the
// two goroutines.
type processSys struct {
	uffd int  // blocking: the monitor sleeps in read(2)
	umo  bool // UFFD_USER_MODE_ONLY
	// bell is a page mapped and registered beside the memory, for Close:
	// its MADV_DONTNEED sends a REMOVE event, the one thing that ends the
	// monitor's read(2) (a signal restarts it, closing the descriptor
	// does not release a reader).
	bell []byte
	// rang is set by the monitor when it reads the bell's event.
	rang bool
	// msgs holds what the monitor read and has not dispatched yet, in
	// the order the kernel queued it, from head on; buf is what it reads
	// into (both the monitor's alone).
	msgs []uffdMsg
	head int
	buf  [16]uffdMsg

	// mapped says, per page, whether the memory is mapped there; written
	// under mmap_lock held for writing, read under it held at all.
	mapped []bool

	// own lists the events the process's own operations will cause,
	// by value so that an operation allocates nothing; ticket numbers the
	// operations, to find their expectations again (ownMu).
	ownMu   sync.Mutex
	ownCond sync.Cond // signalled when own empties
	own     []ownOp
	ticket  uint64

	// queue holds foreign events for the worker; handled counts those
	// done, queued those queued (qmu). qcond wakes the worker and Sync.
	qmu     sync.Mutex
	qcond   sync.Cond
	queue   []uffdMsg
	queued  uint64
	handled uint64
	closing bool

	// spare is a Range for Madvise to reuse: InvalidateRangeStart hands
	// the range to the callbacks, so one declared in madvise escapes: it
	// was the call's last allocation (64 B/op; "uffd madvise 1 page,
	// present" 7319 -> 6837 instructions per op with the GC it drove,
	// cachegrind, AMD EPYC (Zen 3, KVM)). A concurrent caller that finds
	// it taken allocates.
	spare atomic.Pointer[Range]

	faults, events, foreign atomic.Int64
	stop                    atomic.Bool
	wg                      sync.WaitGroup
}

// ownOp is an event one of the process's own operations will cause, and
// whose invalidation its caller runs: events of kind inside [start, end)
// (for a remap: from start to end, of length left) are its own until left
// bytes of them have been seen. The kernel lets the caller go once the
// monitor's read(2) has taken the event, which may be before the monitor
// sees it, and UNMAP and REMAP events may come after munmap and mremap
// return: so an expectation outlives the call, until its events are in.
type ownOp struct {
	kind       uint8
	start, end uint64
	left       uint64
	ticket     uint64 // the operation's, set by own
}

func (p *Process) open(length uint64) error {
	s := &p.sys
	fd, umo, err := openUserfaultfd()
	if err != nil {
		return err
	}
	// Not unix.Mmap, whose Munmap unmaps the whole slice: Close unmaps
	// only what is still mapped.
	ptr, err := unix.MmapPtr(-1, 0, nil, uintptr(length), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		unix.Close(fd)
		return err
	}
	mem := unsafe.Slice((*byte)(ptr), length)
	p.mem, p.base = mem, uint64(uintptr(ptr))
	if err := uffdRegister(fd, p.base, length); err != nil {
		unix.MunmapPtr(ptr, uintptr(length)) //nolint:errcheck
		unix.Close(fd)
		return err
	}
	bell, err := unix.Mmap(-1, 0, PageSize, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err == nil {
		if err = uffdRegister(fd, uint64(uintptr(unsafe.Pointer(&bell[0]))), PageSize); err != nil {
			unix.Munmap(bell) //nolint:errcheck
		}
	}
	if err != nil {
		unix.MunmapPtr(ptr, uintptr(length)) //nolint:errcheck
		unix.Close(fd)
		return err
	}
	s.uffd, s.umo, s.bell = fd, umo, bell
	s.mapped = make([]bool, length/PageSize)
	for i := range s.mapped {
		s.mapped[i] = true
	}
	s.qcond.L = &s.qmu
	s.ownCond.L = &s.ownMu
	return nil
}

func (p *Process) start() {
	p.sys.wg.Add(2)
	krules.Go("uffd_monitor", func() { defer p.sys.wg.Done(); p.monitor() })
	krules.Go("kworker/uffd", func() { defer p.sys.wg.Done(); p.worker() })
}

func (p *Process) userModeOnly() bool { return p.sys.umo }

func (p *Process) stats() Stats {
	return Stats{Faults: p.sys.faults.Load(), Events: p.sys.events.Load(), Foreign: p.sys.foreign.Load()}
}

// monitor is the fault-handling thread of userfaultfd(2)'s example: read
// messages, resolve faults, pass the other events on. It is an OS thread
// of its own, named uffd_monitor as ps -L shows it, that sleeps in a
// blocking read(2): the kernel wakes it directly and the read takes the
// message inside the kernel, with no P needed. A madvise caller waits in
// userfaultfd_event_wait_completion until its REMOVE is read, so it is
// released by the kernel's own round trip (wake the reader, read, wake
// the caller); the kernel woke the reader on the CPU the caller was
// leaving in every one of 20000 1-page calls measured, so neither wake-up
// crossed CPUs, and pinning both threads gained nothing. A monitor that
// polled without sleeping held a CPU, needed a P for every read, and after
// a pause slept in poll(2), when an event cost a wake-up, a P and a second
// system call: "uffd madvise 1 page, present" went from 35.3 µs to 17.9 µs
// (plain 4.6 µs) and "512 pages, present" from 3.84 ms to 1.45 ms (plain
// 2.12 ms) with this one (min of 8-10 runs, noisy; AMD EPYC (Zen 3, KVM),
// 2 vCPUs). The kernel's round trip alone, a C reader on the caller's
// CPU, makes a 1-page madvise 6.8 µs instead of 1.7 µs on that machine;
// the rest of the 1-page figure is the device's fault path (UFFDIO_COPY,
// where the plain side takes a CPU fault). With that path one ioctl and
// Madvise free of allocations, the present figure is as fast as a C
// program doing the same (UFFDIO_COPY, madvise, a reader thread in
// read(2)): 16.2-27.1 µs against C's 16.1-29.4 µs and plain 5.3-6.8 µs
// over runs side by side (noisy, host busy; the kernel's time is the same
// in both profiles, mostly in the two context switches a call costs), so
// its ratio to plain is the kernel's round trip, not ours.
func (p *Process) monitor() {
	s := &p.sys
	// Locked for good: the thread is the monitor's alone, under its name,
	// and ends with it. Whether it is locked does not change the figure.
	runtime.LockOSThread()
	name := [...]byte{'u', 'f', 'f', 'd', '_', 'm', 'o', 'n', 'i', 't', 'o', 'r', 0}
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0) //nolint:errcheck // a name only
	logged := false
	for !s.rang {
		if s.head < len(s.msgs) {
			m := s.msgs[s.head]
			if s.head++; s.head == len(s.msgs) {
				s.msgs, s.head = s.msgs[:0], 0
			}
			p.dispatch(m)
			continue
		}
		if err := p.read(true); err != nil && err != unix.EINTR {
			// Not expected with this buffer; the monitor may not stop
			// before the bell, which Close waits on, so it logs once
			// and goes on.
			if !logged {
				krules.Logf("uffd_monitor: read: %v", err)
				logged = true
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// read reads the queued messages onto msgs: waiting for one, or, unless
// wait, failing with EAGAIN if none is there. Several come in one read
// when queued (userfaultfd_read goes on without waiting after the first);
// each REMOVE's sender was released as its message was taken. poll(2)
// cannot tell whether a read would wait: on a blocking userfaultfd it
// always says EPOLLERR (userfaultfd_poll), as a fault may be woken before
// it is read. Only the monitor reads, so for a read that must not wait
// the descriptor is made non-blocking and back.
func (p *Process) read(wait bool) error {
	s := &p.sys
	if !wait {
		if err := unix.SetNonblock(s.uffd, true); err != nil {
			return err
		}
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&s.buf[0])), len(s.buf)*uffdMsgSize)
	n, err := unix.Read(s.uffd, raw)
	s.msgs = append(s.msgs, s.buf[:max(n, 0)/uffdMsgSize]...)
	if !wait {
		if e := unix.SetNonblock(s.uffd, false); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// dispatch handles one message on the monitor goroutine.
func (p *Process) dispatch(m uffdMsg) {
	s := &p.sys
	if m.event == uffdEventRemove && m.a == uint64(uintptr(unsafe.Pointer(&s.bell[0]))) {
		s.rang = true
		return
	}
	if m.event == uffdEventPagefault {
		p.monitorFault(m.b&^(PageSize-1), m.a&uffdPagefaultFlagWrite != 0)
		return
	}
	s.events.Add(1)
	if p.isOwn(m) {
		return
	}
	s.foreign.Add(1)
	s.qmu.Lock()
	s.queue = append(s.queue, m)
	s.queued++
	s.qmu.Unlock()
	s.qcond.Broadcast()
}

// isOwn reports whether m is an event one of the process's own operations
// caused, and counts it off against the oldest expectation that holds it.
// Messages are dispatched in the order the kernel queued them, so the
// events of an operation are counted before those of any operation its
// caller started after it returned, even where the ranges overlap.
func (p *Process) isOwn(m uffdMsg) bool {
	s := &p.sys
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	for i := range s.own {
		op := &s.own[i]
		if op.kind != m.event {
			continue
		}
		var n uint64
		switch {
		case m.event == uffdEventRemap && m.a == op.start && m.b == op.end:
			n = m.c
		case m.event != uffdEventRemap && op.start <= m.a && m.b <= op.end:
			n = m.b - m.a
		default:
			continue
		}
		if op.left <= n {
			s.own = slices.Delete(s.own, i, i+1)
			if len(s.own) == 0 {
				s.ownCond.Broadcast()
			}
		} else {
			op.left -= n
		}
		return true
	}
	return false
}

// monitorFault resolves a fault a thread waits on. A resolving ioctl fails
// with EAGAIN while an event is queued and unread (mmap_changing): read
// what is there, then try again.
func (p *Process) monitorFault(addr uint64, write bool) {
	s := &p.sys
	for !s.stop.Load() {
		err := p.populate(addr, write)
		switch {
		case err == nil:
			return
		case errors.Is(err, unix.EEXIST):
			uffdWake(s.uffd, addr, PageSize) //nolint:errcheck
			return
		case errors.Is(err, unix.EAGAIN):
			p.readPending()
		default: // ENOENT, EFAULT: the page went away; the thread retries
			uffdWake(s.uffd, addr, PageSize) //nolint:errcheck
			return
		}
	}
}

// readPending reads the events queued before a fault could be resolved,
// which lets their senders go and so lowers mmap_changing; they are
// dispatched after the fault, in their order. Dispatching them now would
// put them before the messages read with the fault, among which an event
// of an operation that has returned may wait: a later operation's event
// would then be counted against that operation's expectation if its
// range holds it, and the later one's would never be met. The read must
// not wait: mmap_changing is raised before the event is queued and
// lowered only once its sender runs again, so there may be nothing to
// read yet, and the next event may never come while the fault waits.
func (p *Process) readPending() {
	if err := p.read(false); err != nil {
		runtime.Gosched() // the event's sender is on its way out
	}
}

// populate maps the page at addr: the WithPageFault contents with
// UFFDIO_COPY, or the zero page (a fresh zeroed page for a write).
func (p *Process) populate(addr uint64, write bool) error {
	// Counted first: the ioctl lets the faulting thread go on at once.
	p.sys.faults.Add(1)
	var err error
	if p.fill != nil && addr >= p.base && addr < p.base+p.Len() {
		page := make([]byte, PageSize)
		p.fill(addr, page)
		err = uffdCopy(p.sys.uffd, addr, page)
	} else if write {
		err = uffdCopy(p.sys.uffd, addr, zeroPage[:])
	} else {
		err = uffdZeropage(p.sys.uffd, addr, PageSize)
	}
	if err != nil {
		p.sys.faults.Add(-1)
	}
	return err
}

var zeroPage [PageSize]byte

// worker invalidates the changes made behind the process's back, in the
// order their events were read, under mmap_lock as the kernel's paths
// hold it. Their pages may already be gone: the kernel zaps them as soon
// as the monitor has read the event, and nothing tells the range before
// the read. It is not the monitor that invalidates: a callback may wait
// for a lock whose holder is stopped on a missing page, which only the
// monitor can map.
func (p *Process) worker() {
	s := &p.sys
	for {
		s.qmu.Lock()
		for len(s.queue) == 0 && !s.closing {
			s.qcond.Wait()
		}
		if len(s.queue) == 0 {
			s.qmu.Unlock()
			return
		}
		m := s.queue[0]
		s.queue = s.queue[1:]
		s.qmu.Unlock()
		p.foreignEvent(m)
		s.qmu.Lock()
		s.handled++
		s.qmu.Unlock()
		s.qcond.Broadcast()
	}
}

func (p *Process) foreignEvent(m uffdMsg) {
	mm := p.mm
	switch m.event {
	case uffdEventRemove:
		mm.mmapLock.RLock()
		r := NewRange(mm, EventClear, m.a, m.b)
		InvalidateRangeStart(&r)
		InvalidateRangeEnd(&r)
		mm.mmapLock.RUnlock()
	case uffdEventUnmap:
		mm.mmapLock.Lock()
		r := NewRange(mm, EventUnmap, m.a, m.b)
		InvalidateRangeStart(&r)
		InvalidateRangeEnd(&r)
		p.setMapped(m.a, m.b, false)
		mm.mmapLock.Unlock()
	case uffdEventRemap:
		mm.mmapLock.Lock()
		r := NewRange(mm, EventUnmap, m.a, m.a+m.c)
		InvalidateRangeStart(&r)
		InvalidateRangeEnd(&r)
		p.setMapped(m.a, m.a+m.c, false)
		p.setMapped(m.b, m.b+m.c, true)
		mm.mmapLock.Unlock()
	}
}

// setMapped marks the pages of [start, end) that are inside the memory.
// The caller holds mmap_lock for writing.
func (p *Process) setMapped(start, end uint64, v bool) {
	lo, hi := max(start, p.base), min(end, p.base+p.Len())
	for a := lo; a < hi; a += PageSize {
		p.sys.mapped[(a-p.base)/PageSize] = v
	}
}

func (p *Process) sync() {
	s := &p.sys
	s.ownMu.Lock()
	for len(s.own) != 0 && !s.stop.Load() {
		s.ownCond.Wait()
	}
	s.ownMu.Unlock()
	s.qmu.Lock()
	target := s.queued
	for s.handled < target {
		s.qcond.Wait()
	}
	s.qmu.Unlock()
}

// own runs the syscall of one of the process's own operations with the
// events it will cause marked as already invalidated, and the monitor
// polling for them. ops are copied. A call that succeeds does not take
// ownMu again: the monitor, which the kernel released the caller from,
// may be holding it to count the call's event off.
func (p *Process) own(ops []ownOp, call func() unix.Errno) error {
	s := &p.sys
	s.ownMu.Lock()
	s.ticket++
	t := s.ticket
	for _, op := range ops {
		op.ticket = t
		s.own = append(s.own, op)
	}
	s.ownMu.Unlock()
	e := call()
	if e == 0 {
		return nil
	}
	// What a failed madvise dropped it reported; the others did nothing.
	s.ownMu.Lock()
	s.own = slices.DeleteFunc(s.own, func(x ownOp) bool { return x.kind != uffdEventRemove && x.ticket == t })
	if len(s.own) == 0 {
		s.ownCond.Broadcast()
	}
	s.ownMu.Unlock()
	return e
}

// mappedBytes returns how much of [start, end) is mapped. The caller holds
// mmap_lock.
func (p *Process) mappedBytes(start, end uint64) uint64 {
	var n uint64
	for a := start; a < end; a += PageSize {
		if p.isMapped(a) {
			n += PageSize
		}
	}
	return n
}

// unmapOps appends to ops what an unmap of [start, end) will send: one
// UNMAP of the whole range if any of it is mapped (userfaultfd_unmap_prep),
// or, if perRun, one for each run of mapped pages, which are unmapped one
// by one.
func (p *Process) unmapOps(ops []ownOp, start, end uint64, perRun bool) []ownOp {
	n := p.mappedBytes(start, end)
	if n == 0 {
		return ops
	}
	if !perRun {
		n = end - start
	}
	return append(ops, ownOp{kind: uffdEventUnmap, start: start, end: end, left: n})
}

// madvise invalidates before the syscall and ends the invalidation after
// it. The kernel's madvise_dontneed_free first waits for the REMOVE to be
// read (userfaultfd_remove), then zaps the pages with the notifiers
// around the zap (zap_page_range_single): once the monitor has read the
// event the pages may be freed at any moment, so the device must have let
// go of them before that read, and the one point that comes before it is
// before the syscall. Starting earlier than the kernel does is safe, as
// the device only stops using pages that are about to go; ending after
// the syscall returns is after the zap, as the kernel's end is. Neither
// is on the monitor's path: only its read releases the caller.
func (p *Process) madvise(off, length uint64) error {
	start, end, err := p.pageRange(off, length)
	if err != nil {
		// Tested only here, off the path of a real madvise.
		if off%PageSize == 0 && length == 0 {
			return nil // do_madvise: nothing to do
		}
		return err
	}
	mm := p.mm
	mm.mmapLock.RLock()
	defer mm.mmapLock.RUnlock()
	r := p.sys.spare.Swap(nil)
	if r == nil {
		r = new(Range)
	}
	*r = NewRange(mm, EventClear, start, end)
	InvalidateRangeStart(r)
	var buf [1]ownOp
	ops := buf[:0]
	if n := p.mappedBytes(start, end); n != 0 {
		ops = append(ops, ownOp{kind: uffdEventRemove, start: start, end: end, left: n})
	}
	err = p.own(ops, func() unix.Errno {
		_, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_DONTNEED)
		return e
	})
	InvalidateRangeEnd(r)
	p.sys.spare.Store(r)
	return err
}

func (p *Process) munmap(off, length uint64) error { return p.replaceRange(off, length, false) }

func (p *Process) mmap(off, length uint64) error { return p.replaceRange(off, length, true) }

// replaceRange unmaps [start, end), or maps fresh memory there, as the
// kernel's do_vmi_munmap does: mmap_lock held for writing and an UNMAP
// invalidation around it, the UNMAP events it causes expected as the
// process's own. A new mapping is registered with userfaultfd again. Only
// the process's own pages are unmapped or replaced, one run at a time;
// holes are filled with MAP_FIXED_NOREPLACE (see claimHoles).
func (p *Process) replaceRange(off, length uint64, mapped bool) error {
	start, end, err := p.pageRange(off, length)
	if err != nil {
		return err
	}
	mm := p.mm
	mm.mmapLock.Lock()
	defer mm.mmapLock.Unlock()
	r := NewRange(mm, EventUnmap, start, end)
	InvalidateRangeStart(&r)
	var buf [1]ownOp
	err = p.own(p.unmapOps(buf[:0], start, end, true), func() unix.Errno {
		if !mapped {
			for a, b := range p.runs(start, end, true) {
				if _, _, e := unix.Syscall(unix.SYS_MUNMAP, uintptr(a), uintptr(b-a), 0); e != 0 {
					return e
				}
			}
			return 0
		}
		claimed, e := p.claimHoles(start, end, unix.PROT_READ|unix.PROT_WRITE)
		if e != 0 {
			return e
		}
		for a, b := range p.runs(start, end, true) {
			if _, _, e := unix.Syscall6(unix.SYS_MMAP, uintptr(a), uintptr(b-a), unix.PROT_READ|unix.PROT_WRITE,
				unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE|unix.MAP_FIXED, ^uintptr(0), 0); e != 0 {
				unmapRuns(claimed)
				return e
			}
		}
		return 0
	})
	if err == nil {
		if mapped {
			err = uffdRegister(p.sys.uffd, start, end-start)
		}
		p.setMapped(start, end, mapped)
	}
	InvalidateRangeEnd(&r)
	return err
}

// runs yields the maximal runs [a, b) of pages of [start, end) whose
// mapped state is mapped. The caller holds mmap_lock.
func (p *Process) runs(start, end uint64, mapped bool) iter.Seq2[uint64, uint64] {
	return func(yield func(uint64, uint64) bool) {
		for a := start; a < end; {
			if p.isMapped(a) != mapped {
				a += PageSize
				continue
			}
			b := a + PageSize
			for b < end && p.isMapped(b) == mapped {
				b += PageSize
			}
			if !yield(a, b) {
				return
			}
			a = b
		}
	}
}

// claimHoles maps anonymous memory with prot over the pages of [start,
// end) that are not the process's, and returns the runs it mapped. A hole
// Munmap or Mremap left is free address space, where any mmap may have
// been placed since (the Go runtime maps its own chunks into free ranges,
// and the kernel hands out the highest free range first), so a MAP_FIXED
// or MREMAP_FIXED over it would pull memory from under its owner. With
// MAP_FIXED_NOREPLACE the kernel refuses with EEXIST instead, and nothing
// is left changed. A kernel older than 4.17 takes the flag for a hint and
// maps elsewhere: that is refused the same way.
func (p *Process) claimHoles(start, end uint64, prot int) ([][2]uint64, unix.Errno) {
	var claimed [][2]uint64
	for a, b := range p.runs(start, end, false) {
		r, _, e := unix.Syscall6(unix.SYS_MMAP, uintptr(a), uintptr(b-a), uintptr(prot),
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE|unix.MAP_FIXED_NOREPLACE, ^uintptr(0), 0)
		if e == 0 && r != uintptr(a) {
			unix.Syscall(unix.SYS_MUNMAP, r, uintptr(b-a), 0) //nolint:errcheck
			e = unix.EEXIST
		}
		if e != 0 {
			unmapRuns(claimed)
			return nil, e
		}
		claimed = append(claimed, [2]uint64{a, b})
	}
	return claimed, 0
}

// unmapRuns unmaps what claimHoles mapped.
func unmapRuns(runs [][2]uint64) {
	for _, r := range runs {
		unix.Syscall(unix.SYS_MUNMAP, uintptr(r[0]), uintptr(r[1]-r[0]), 0) //nolint:errcheck
	}
}

func (p *Process) mremap(from, to, length uint64) error {
	src, srcEnd, err := p.pageRange(from, length)
	if err != nil {
		return err
	}
	dst, dstEnd, err := p.pageRange(to, length)
	if err != nil {
		return err
	}
	if src < dstEnd && dst < srcEnd {
		return ErrInvalid
	}
	mm := p.mm
	mm.mmapLock.Lock()
	defer mm.mmapLock.Unlock()
	for a := src; a < srcEnd; a += PageSize {
		if !p.sys.mapped[(a-p.base)/PageSize] {
			return ErrFault
		}
	}
	rd := NewRange(mm, EventUnmap, dst, dstEnd) // do_munmap of the destination
	rs := NewRange(mm, EventUnmap, src, srcEnd) // move_page_tables
	InvalidateRangeStart(&rd)
	InvalidateRangeStart(&rs)
	var buf [3]ownOp
	ops := append(p.unmapOps(buf[:0], dst, dstEnd, false), // do_munmap of the destination
		ownOp{kind: uffdEventRemap, start: src, end: dst, left: length},
		ownOp{kind: uffdEventUnmap, start: src, end: srcEnd, left: length}) // the old VMA
	err = p.own(ops, func() unix.Errno {
		// Placeholders over the destination's holes, which MREMAP_FIXED
		// replaces: it must replace nobody else's memory.
		claimed, e := p.claimHoles(dst, dstEnd, unix.PROT_NONE)
		if e != 0 {
			return e
		}
		if _, _, e = unix.Syscall6(unix.SYS_MREMAP, uintptr(src), uintptr(length), uintptr(length),
			unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, uintptr(dst), 0); e != 0 {
			unmapRuns(claimed)
		}
		return e
	})
	if err == nil {
		p.setMapped(src, srcEnd, false)
		p.setMapped(dst, dstEnd, true)
	}
	InvalidateRangeEnd(&rs)
	InvalidateRangeEnd(&rd)
	return err
}

// rangeFault is HMMRangeFault on real memory: hmm_range_fault's walk,
// with mincore(2) for the page table and the monitor's fault path for
// missing pages. The caller holds mmap_lock, so the mapped bookkeeping is
// stable. The range is walked faultWindow pages at a time, as the
// kernel's walk reads the page table as it goes, so that what mincore
// says fits on the stack (a 512-page range allocated 512 bytes a call).
//
// A fault of zero-filled pages asks mincore nothing until a page turns out
// to be there: the resolving ioctl is itself the test, under the page
// table lock (mfill_atomic_install_pte refuses a page that is not none
// with EEXIST), so a missing page costs one system call, not two (uffd
// madvise 1 page, present: 7052 -> 6811 instructions per op, cachegrind;
// CPU time 25.4 -> 23.7 µs per op, min of 6, noisy; AMD EPYC (Zen 3,
// KVM)). A page found there was copied for nothing, so the rest of its
// window is asked about first. A WithPageFault function is not run for a
// page that is there: its walk asks first.
func (p *Process) rangeFault(r *HMMRange) error {
	n := int((r.End - r.Start) / PageSize)
	if r.Start%PageSize != 0 || r.End%PageSize != 0 || r.End <= r.Start || len(r.PFNs) < n {
		return ErrInvalid
	}
	fault := r.DefaultFlags&HMMPFNReqFault != 0
	write := r.DefaultFlags&HMMPFNReqWrite != 0
	var present [faultWindow]byte
	for w := 0; w < n; w += faultWindow {
		m := min(faultWindow, n-w)
		base := r.Start + uint64(w)*PageSize
		asked := !fault || p.fill != nil
		if asked {
			if err := p.mincore(base, present[:m], 0); err != nil {
				return err
			}
		} else {
			clear(present[:m])
		}
		for i := 0; i < m; {
			if r.Notifier.CheckRetry(r.NotifierSeq) {
				return ErrBusy
			}
			addr := base + uint64(i)*PageSize
			pfn := &r.PFNs[w+i]
			if !p.isMapped(addr) {
				if fault {
					*pfn = HMMPFNError
					return ErrFault
				}
				*pfn = HMMPFNError // hmm_vma_walk_hole without a VMA
				i++
				continue
			}
			if present[i]&1 == 0 {
				if !fault {
					*pfn = 0
					i++
					continue
				}
				// The missing run from i, mapped with one ioctl
				// where the zero page's contents are wanted.
				j := i + 1
				for j < m && p.fill == nil && present[j]&1 == 0 && p.isMapped(base+uint64(j)*PageSize) {
					j++
				}
				k, err := p.populateRun(addr, j-i, write)
				for end := i + k; i < end; i++ {
					r.PFNs[w+i] = (base+uint64(i)*PageSize)/PageSize | HMMPFNValid | HMMPFNWrite
				}
				switch {
				case err == nil, k != 0: // stopped partway: the rest is tried again
					continue
				case errors.Is(err, unix.EEXIST): // there already, or made present meanwhile
					if !asked {
						asked = true
						if err := p.mincore(base, present[:m], i+1); err != nil {
							return err
						}
					}
				case errors.Is(err, unix.EAGAIN): // an event is on its way
					return ErrBusy
				default:
					*pfn = HMMPFNError
					return ErrFault
				}
			}
			*pfn = addr/PageSize | HMMPFNValid | HMMPFNWrite
			i++
		}
	}
	return nil
}

// mincore fills present[from:] with whether the pages from base are in
// memory (mincore(2)), asking once for each run of mapped pages.
func (p *Process) mincore(base uint64, present []byte, from int) error {
	for i := from; i < len(present); {
		addr := base + uint64(i)*PageSize
		if !p.isMapped(addr) {
			i++
			continue
		}
		j := i + 1
		for j < len(present) && p.isMapped(base+uint64(j)*PageSize) {
			j++
		}
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(addr), uintptr(j-i)*PageSize,
			uintptr(unsafe.Pointer(&present[i]))); e != 0 {
			return e
		}
		i = j
	}
	return nil
}

// faultWindow is how many pages rangeFault asks mincore about at once: 64
// bytes of stack, and a 512-page walk makes 8 calls where it made one.
const faultWindow = 64

// populateRun maps the n missing pages from addr as populate does, with
// one UFFDIO_COPY or UFFDIO_ZEROPAGE for all of them when there is no
// WithPageFault function (n is then 1), and returns how many it mapped:
// the ioctls stop at the first page that is there already, or when an
// event is queued, and then fail with EAGAIN, or with EEXIST or EAGAIN
// if they mapped none. One ioctl instead of n, with the windowed walk,
// made "uffd madvise 512 pages, present" 280434 -> 56892 instructions per
// op (cachegrind) and 2.5 ms -> 0.83-1.18 ms (plain 1.9-3.3 ms; noisy);
// the 1-page figure's walk costs 43 instructions more (AMD EPYC (Zen 3,
// KVM)).
func (p *Process) populateRun(addr uint64, n int, write bool) (int, error) {
	if n == 1 || p.fill != nil {
		if err := p.populate(addr, write); err != nil {
			return 0, err
		}
		return 1, nil
	}
	s := &p.sys
	length := uint64(n) * PageSize
	s.faults.Add(int64(n)) // counted first, as populate counts
	var done int64
	var err error
	if write {
		done, err = uffdCopyZero(s.uffd, addr, length)
	} else {
		done, err = uffdZeropageN(s.uffd, addr, length)
	}
	k := int(max(done, 0) / PageSize)
	if err != nil {
		s.faults.Add(int64(k - n))
	}
	return k, err
}

func (p *Process) isMapped(addr uint64) bool {
	return addr >= p.base && addr < p.base+p.Len() && p.sys.mapped[(addr-p.base)/PageSize]
}

func (p *Process) close() error {
	s := &p.sys
	s.stop.Store(true)
	// The monitor leaves its read(2) only for an event: ring the bell.
	// The madvise returns once the monitor has read it, and the monitor
	// stops after the messages read with it.
	unix.Madvise(s.bell, unix.MADV_DONTNEED) //nolint:errcheck
	s.qmu.Lock()
	s.closing = true
	s.qmu.Unlock()
	s.qcond.Broadcast()
	s.wg.Wait()
	s.ownMu.Lock()
	s.ownCond.Broadcast() // a Sync waiting for events that will not come
	s.ownMu.Unlock()
	// Closing the descriptor unregisters the memory and wakes every
	// thread still waiting on a fault (userfaultfd_release).
	err := unix.Close(s.uffd)
	unix.Munmap(s.bell) //nolint:errcheck
	p.mm.Exit()
	// Only what is still the process's is unmapped, as exit_mmap unmaps
	// the VMAs there are: a hole Munmap or Mremap left is free address
	// space, where any mmap may have been placed since (the Go runtime
	// puts its own chunks there), and unmapping it would pull memory
	// from under its owner.
	for a, b := range p.runs(p.base, p.base+p.Len(), true) {
		if _, _, e := unix.Syscall(unix.SYS_MUNMAP, uintptr(a), uintptr(b-a), 0); e != 0 && err == nil {
			err = e
		}
	}
	p.mem = nil
	return err
}
