package main

import (
	"errors"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
)

// The driver of the strategy report: a device that mirrors address spaces
// (an mlx5 on-demand-paging memory region) and, for every invalidated
// range, must zap its translation entries by building a translation buffer
// of 8 bytes a page and posting it to the device, in as many passes as the
// buffer needs. Where the buffer comes from is the strategy.

const (
	// mttEntrySize is the size of one translation entry (an mlx5 MTT).
	mttEntrySize = 8
	// maxChunkOrder bounds a translation buffer, as MLX5_MAX_UMR_CHUNK
	// does: 4 pages, 2048 entries, 8 MiB of address space a pass.
	maxChunkOrder = 2
	chunkBytes    = gfp.PageSize << maxChunkOrder
	// mttEntries is the size of the device's table for one address space;
	// a page's entry is at its page number modulo this.
	mttEntries = 1 << 12
)

// The errors a callback returns, which the MMU-notifier code knows by
// value: -EAGAIN (retry later, allowed only when not blockable) and
// -ENOMEM.
var (
	errAgain    error = syscall.EAGAIN
	errNoMemory error = syscall.ENOMEM
)

// mode says which kind of invalidation a callback serves.
type mode int

const (
	blockable    mode = iota // Unmap, Protect: may sleep
	nonBlockable             // the OOM reaper: must not sleep
	nModes
)

func (m mode) String() string {
	if m == blockable {
		return "block"
	}
	return "nonblock"
}

// modeStats are a device's counters for one mode, bumped by callbacks on
// any goroutine.
type modeStats struct {
	lat           histogram
	invalidations atomic.Int64 // callbacks that zapped their range
	passes        atomic.Int64 // commands posted
	allocFailures atomic.Int64 // allocations that failed, fallbacks or not
	fallbacks     atomic.Int64 // atomic: smaller chunk or emergency page
	emergency     atomic.Int64 // atomic: of which the emergency page
	fromReserve   atomic.Int64 // mempool: buffers the reserve supplied
	eagain        atomic.Int64 // callbacks that returned -EAGAIN
	fenceWaits    atomic.Int64 // fence: callbacks that waited for a GPU job
	errors        atomic.Int64 // callbacks that returned another error
}

// device is the driver's per-device state, shared by every address space
// it mirrors.
type device struct {
	strat strategy
	bufs  buffers // the strategy's state
	zone  *gfp.Zone

	doorbell      atomic.Uint64 // commands posted to the device
	liveMirrors   atomic.Int64
	peakMirrors   atomic.Int64
	registerFails atomic.Int64 // mirrors the strategy refused at registration

	stats [nModes]modeStats
}

// newDevice probes the device: the strategy sets up everything it needs
// before any callback can run.
func newDevice(s strategy, z *gfp.Zone, reserve int) (*device, error) {
	d := &device{strat: s, zone: z}
	bufs, err := s.probe(d, reserve)
	if err != nil {
		return nil, err
	}
	d.bufs = bufs
	return d, nil
}

// close frees what newDevice allocated. Every mirror must be released.
func (d *device) close() error { return d.bufs.close() }

// reserveBytes is the memory the strategy keeps allocated for callbacks
// that may never come.
func (d *device) reserveBytes() int64 { return d.bufs.reserveBytes(d) }

// afterChange runs after each blockable change to m's address space, on
// the goroutine that made it: the application's next step, if the strategy
// has one (submitter).
func (d *device) afterChange(m *mirror) {
	if s, ok := d.bufs.(submitter); ok {
		s.submit(m)
	}
}

// mirror is the device's view of one address space: its translation
// table, the lock that serialises updates to it (umem_odp->umem_mutex) and
// the buffer a strategy may give it when it is registered.
type mirror struct {
	dev *device
	mu  lockclass.Mutex
	buf *gfp.Page
	mtt []uint64
}

// newMirror sets up the mirror of a new address space, before its notifier
// is registered and before any lock is taken; it fails with -ENOMEM if the
// strategy cannot give it what it needs, as registration would.
func (d *device) newMirror() (*mirror, error) {
	m := &mirror{dev: d, mtt: make([]uint64, mttEntries)}
	m.mu.Init(lockclass.WithName("&umem_odp->umem_mutex"))
	if err := d.bufs.attach(m); err != nil {
		d.registerFails.Add(1)
		return nil, err
	}
	n := d.liveMirrors.Add(1)
	for {
		peak := d.peakMirrors.Load()
		if n <= peak || d.peakMirrors.CompareAndSwap(peak, n) {
			break
		}
	}
	return m, nil
}

// release frees the mirror's buffer and its table, once no callback can
// run. The table goes too: the mirror itself may outlive its address space
// (a goroutine's idle task record can still point at its lock), and the
// reaper makes thousands of mirrors a run.
func (m *mirror) release() {
	m.dev.bufs.detach(m)
	m.mtt = nil
	m.dev.liveMirrors.Add(-1)
}

// invalidate is the notifier's invalidate_range_start: zap the device's
// entries for [start, end). A blockable caller may wait for the mirror's
// lock; a non-blockable one (the OOM reaper) only tries it and returns
// -EAGAIN, as nouveau and amdgpu do. The latency of every callback that
// zapped its range is recorded.
func (m *mirror) invalidate(start, end uint64, md mode) error {
	t0 := time.Now()
	st := &m.dev.stats[md]
	if md == blockable {
		m.mu.Lock()
	} else if !m.mu.TryLock() {
		st.eagain.Add(1)
		return errAgain
	}
	err := m.dev.bufs.zap(m, st, start/gfp.PageSize, int((end-start)/gfp.PageSize), md)
	m.mu.Unlock()
	switch {
	case err == nil:
		st.lat.record(time.Since(t0))
		st.invalidations.Add(1)
	case errors.Is(err, errAgain):
		st.eagain.Add(1)
	default:
		st.errors.Add(1)
	}
	return err
}

// post writes zapped entries for npages pages into buf, as many as fit,
// and copies them to the device's table, one command a pass.
func (m *mirror) post(st *modeStats, buf []uint64, first uint64, npages int) {
	passes := 0
	for done := 0; done < npages; passes++ {
		n := min(len(buf), npages-done)
		clear(buf[:n]) // a zapped entry is all zeroes
		for at, src := int((first+uint64(done))%mttEntries), buf[:n]; len(src) > 0; at = 0 {
			src = src[copy(m.mtt[at:], src):]
		}
		m.dev.doorbell.Add(1)
		done += n
	}
	st.passes.Add(int64(passes))
}

// chunkOrder is the order of the buffer that holds npages entries in one
// pass, at most maxChunkOrder.
func chunkOrder(npages int) int {
	order := 0
	for order < maxChunkOrder && gfp.PageSize<<order < npages*mttEntrySize {
		order++
	}
	return order
}

// entries views a block of pages as translation entries.
func entries(p *gfp.Page) []uint64 {
	b := p.Bytes()
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/mttEntrySize)
}
