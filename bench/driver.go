package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mempool"
	"github.com/krules/krules/nonblock"
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
	// stackBufBytes is nouveau's on-stack argument buffer (nvif_object_mthd).
	stackBufBytes   = 128
	stackBufEntries = stackBufBytes / mttEntrySize
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

// strategy is where a callback's translation buffer comes from.
type strategy int

const (
	stratKernel   strategy = iota + 1 // GFP_KERNEL in the callback: the bug
	stratAtomic                       // GFP_ATOMIC, smaller chunk, emergency page
	stratMempool                      // a mempool reserve of N buffers
	stratPrealloc                     // one buffer per notifier, allocated at registration
	stratStack                        // a 128-byte stack buffer, many passes
)

type strategyInfo struct {
	id     strategy
	key    string // for -strategies and benchmark names
	name   string // for the table
	lesson string // for the README and the report's notes
}

var strategies = []strategyInfo{
	{stratKernel, "kernel", "1 GFP_KERNEL",
		"GFP_KERNEL in the callback is the bug. Reclaim may run notifiers, so lockdep proves the cycle between the notifier map and fs_reclaim on the first call, with no memory pressure; under the OOM reaper every call is a sleep in a non-blocking section, and below min it fails, which a blockable callback may not do (a WARNING) and which leaves the reaper unable to reap."},
	{stratAtomic, "atomic", "2 ATOMIC+fallback",
		"GFP_ATOMIC, then a smaller chunk, then an emergency page never sleeps, but below min it succeeds by eating the reserve kept for interrupts (<min); the fallbacks cost passes, and the emergency page's mutex may only be trylocked by a non-blockable caller."},
	{stratMempool, "mempool", "3 mempool",
		"A mempool of N buffers is the driver's own reserve: sized to the callbacks that can run at once it never runs dry, turns every failure of the zone into reserve use, and costs that memory for ever (-reserve 1 shows what an undersized pool does to the reaper)."},
	{stratPrealloc, "prealloc", "4 prealloc/notifier",
		"Preallocation per notifier, before any lock, makes the callback allocation-free and the fastest; the price is a buffer per notifier, and registration becomes the place where memory pressure fails."},
	{stratStack, "stack", "5 stack 128 B",
		"A 128-byte stack buffer (nouveau's) needs no memory and cannot fail; it pays in passes, one device command per 16 entries, cheap here and dear on a device with a slow command queue."},
}

func strategyByID(id strategy) strategyInfo { return strategies[id-1] }

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
	fallbacks     atomic.Int64 // strategy 2: smaller chunk or emergency page
	emergency     atomic.Int64 // strategy 2: of which the emergency page
	fromReserve   atomic.Int64 // strategy 3: buffers the reserve supplied
	eagain        atomic.Int64 // callbacks that returned -EAGAIN
	errors        atomic.Int64 // callbacks that returned another error
}

// device is the driver's per-device state, shared by every address space
// it mirrors.
type device struct {
	strat strategy
	zone  *gfp.Zone

	emergency   *gfp.Page       // strategy 2: xlt_emergency_page
	emergencyMu lockclass.Mutex // xlt_emergency_page_mutex

	pool      *mempool.Pool[*gfp.Page] // strategy 3
	poolReady atomic.Bool              // the reserve is filled: later allocations are fresh
	poolWait  nonblock.WaitQueue       // blockable callbacks waiting for a buffer

	doorbell      atomic.Uint64 // commands posted to the device
	liveMirrors   atomic.Int64
	peakMirrors   atomic.Int64
	registerFails atomic.Int64 // strategy 4: buffers refused at registration

	stats [nModes]modeStats
}

// newDevice probes the device: everything a strategy needs before any
// callback can run is allocated here, with GFP_KERNEL and no lock held.
func newDevice(s strategy, z *gfp.Zone, reserve int) (*device, error) {
	d := &device{strat: s, zone: z}
	d.emergencyMu.Init(lockclass.WithName("xlt_emergency_page_mutex"))
	switch s {
	case stratAtomic:
		p, err := z.AllocPages(0, gfp.Kernel)
		if err != nil {
			return nil, fmt.Errorf("emergency page: %w", err)
		}
		d.emergency = p
	case stratMempool:
		pool, err := mempool.New(reserve, func(f gfp.Flags) (*gfp.Page, error) {
			p, err := z.AllocPages(maxChunkOrder, f)
			if err == nil && d.poolReady.Load() {
				markFresh(p)
			}
			return p, err
		}, func(p *gfp.Page) { z.FreePages(p, maxChunkOrder) },
			mempool.WithName("mlx5_xlt"), mempool.WithDebug(false))
		if err != nil {
			return nil, fmt.Errorf("mempool: %w", err)
		}
		d.pool = pool
		d.poolReady.Store(true)
	}
	return d, nil
}

// close frees what newDevice allocated. Every mirror must be released.
func (d *device) close() error {
	if d.emergency != nil {
		d.zone.FreePages(d.emergency, 0)
		d.emergency = nil
	}
	if d.pool != nil {
		return d.pool.Close()
	}
	return nil
}

// reserveBytes is the memory the strategy keeps allocated for callbacks
// that may never come: the emergency page, the pool's reserve, or the
// per-notifier buffers at their peak.
func (d *device) reserveBytes() int64 {
	switch d.strat {
	case stratAtomic:
		return gfp.PageSize
	case stratMempool:
		return int64(d.pool.MinNr()) * chunkBytes
	case stratPrealloc:
		return d.peakMirrors.Load() * chunkBytes
	}
	return 0
}

// mirror is the device's view of one address space: its translation
// table, the lock that serialises updates to it (umem_odp->umem_mutex) and,
// for strategy 4, the buffer allocated when it was registered.
type mirror struct {
	dev *device
	mu  lockclass.Mutex
	buf *gfp.Page
	mtt []uint64
}

// newMirror sets up the mirror of a new address space. For strategy 4 it
// allocates the mirror's translation buffer here, before the notifier is
// registered and before any lock is taken, so GFP_KERNEL is safe; it
// fails with -ENOMEM if memory is short, as registration would.
func (d *device) newMirror() (*mirror, error) {
	m := &mirror{dev: d, mtt: make([]uint64, mttEntries)}
	m.mu.Init(lockclass.WithName("&umem_odp->umem_mutex"))
	if d.strat == stratPrealloc {
		p, err := d.zone.AllocPages(maxChunkOrder, gfp.Kernel|gfp.NoWarn)
		if err != nil {
			d.registerFails.Add(1)
			return nil, errNoMemory
		}
		m.buf = p
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
	if m.buf != nil {
		m.dev.zone.FreePages(m.buf, maxChunkOrder)
		m.buf = nil
	}
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
	err := m.zap(st, start/gfp.PageSize, int((end-start)/gfp.PageSize), md)
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

// zap builds the translation buffer for npages pages from page number
// first and posts it, getting the buffer the strategy's way.
func (m *mirror) zap(st *modeStats, first uint64, npages int, md mode) error {
	d, z := m.dev, m.dev.zone
	switch d.strat {
	case stratKernel:
		order := chunkOrder(npages)
		p, err := z.AllocPages(order, gfp.Kernel)
		if err != nil {
			st.allocFailures.Add(1)
			return errNoMemory
		}
		m.post(st, entries(p), first, npages)
		z.FreePages(p, order)

	case stratAtomic:
		// mlx5r_umr_alloc_xlt: the whole chunk if a block is free, else
		// one page, else the emergency page under its mutex.
		order := chunkOrder(npages)
		p, err := z.AllocPages(order, gfp.Atomic|gfp.NoWarn)
		if err != nil && order > 0 {
			st.allocFailures.Add(1)
			order = 0
			p, err = z.AllocPages(0, gfp.Atomic|gfp.NoWarn)
		}
		if err == nil {
			if order < chunkOrder(npages) {
				st.fallbacks.Add(1)
			}
			m.post(st, entries(p), first, npages)
			z.FreePages(p, order)
			return nil
		}
		st.allocFailures.Add(1)
		if md == blockable {
			d.emergencyMu.Lock()
		} else if !d.emergencyMu.TryLock() {
			return errAgain
		}
		st.fallbacks.Add(1)
		st.emergency.Add(1)
		m.post(st, entries(d.emergency), first, npages)
		d.emergencyMu.Unlock()

	case stratMempool:
		p, err := d.pool.Alloc(gfp.NoWait)
		for err != nil {
			st.allocFailures.Add(1)
			if md != blockable {
				return errAgain
			}
			// Every buffer is out: wait for a callback to give one back.
			// Letting the pool wait instead (a reclaiming gfp) would be
			// strategy 1's bug again.
			_, _ = d.poolWait.WaitTimeout(context.Background(), func() bool { return d.pool.Stats().Reserve > 0 }, time.Millisecond)
			p, err = d.pool.Alloc(gfp.NoWait)
		}
		if !takeFresh(p) {
			st.fromReserve.Add(1)
		}
		m.post(st, entries(p), first, npages)
		d.pool.Free(p)
		if d.poolWait.HasSleepers() {
			d.poolWait.WakeUp()
		}

	case stratPrealloc:
		m.post(st, entries(m.buf), first, npages)

	case stratStack:
		var buf [stackBufEntries]uint64
		m.post(st, buf[:], first, npages)
	}
	return nil
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

// freshMark tags a pool buffer that came from the allocator rather than
// the reserve, in its first entry, which every use overwrites.
const freshMark = 0x6d6c78355f786c74 // "mlx5_xlt"

func markFresh(p *gfp.Page) { entries(p)[0] = freshMark }

func takeFresh(p *gfp.Page) bool {
	e := entries(p)
	fresh := e[0] == freshMark
	e[0] = 0
	return fresh
}
