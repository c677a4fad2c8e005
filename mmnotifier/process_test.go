//go:build !krules_nolockdep

package mmnotifier_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
	"github.com/krules/krules/nonblock"
)

// newProcess maps pages of real memory watched through userfaultfd, closed
// when the test ends, or skips the test saying why userfaultfd is missing.
func newProcess(t testing.TB, pages int, opts ...mmnotifier.ProcessOption) *mmnotifier.Process {
	t.Helper()
	krulestest.ResetDefault(t)
	z := newZone(t, 4<<20)
	opts = append([]mmnotifier.ProcessOption{mmnotifier.WithMMOptions(mmnotifier.WithZone(z), mmnotifier.WithTask(42, "app"))}, opts...)
	p, err := mmnotifier.NewProcess(uint64(pages)*pg, opts...)
	if errors.Is(err, mmnotifier.ErrNoUserfaultfd) {
		t.Skip(err)
	}
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, p.Close())
		mmnotifier.Synchronize()
	})
	return p
}

// stamp is a WithPageFault that writes the page's address and a
// generation into its first 16 bytes: every fault of a page gives it new
// contents, so a device copy of an old page cannot pass for the new one.
type stamp struct {
	mu  sync.Mutex
	gen uint64
}

func (s *stamp) fill(addr uint64, page []byte) {
	s.mu.Lock()
	s.gen++
	g := s.gen
	s.mu.Unlock()
	binary.LittleEndian.PutUint64(page, addr)
	binary.LittleEndian.PutUint64(page[8:], g)
}

// rangeLog is a list notifier that remembers the ranges it saw.
type rangeLog struct {
	mu     sync.Mutex
	starts []string
	ends   int
}

func (r *rangeLog) InvalidateRangeStart(rg *mmnotifier.Range) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts = append(r.starts, rg.String())
	return nil
}

func (r *rangeLog) InvalidateRangeEnd(*mmnotifier.Range) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ends++
}

func (r *rangeLog) seen() ([]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.starts...), r.ends
}

func registerLog(t *testing.T, p *mmnotifier.Process) *rangeLog {
	rec := &rangeLog{}
	sub, err := mmnotifier.Register(p.MM(), rec)
	require.NoError(t, err)
	t.Cleanup(sub.Unregister)
	return rec
}

func span(p *mmnotifier.Process, from, to int, ev mmnotifier.Event) string {
	return fmt.Sprintf("[%#x-%#x) %s blockable", p.Addr()+uint64(from)*pg, p.Addr()+uint64(to)*pg, ev)
}

func TestProcessFirstTouchFaultsThroughTheFaultPath(t *testing.T) {
	krulestest.Check(t)
	var s stamp
	p := newProcess(t, 4, mmnotifier.WithPageFault(s.fill))
	mem := p.Bytes()
	require.Equal(t, p.Addr()+2*pg, binary.LittleEndian.Uint64(mem[2*pg:]), "the first touch got the fault path's page")
	require.EqualValues(t, 1, p.Stats().Faults)
	mem[2*pg+100] = 7 // present now: no fault
	require.EqualValues(t, 1, p.Stats().Faults)
	require.Equal(t, uint64(1), binary.LittleEndian.Uint64(mem[2*pg+8:]))
}

func TestProcessMadviseIsABlockableClearOfTheRange(t *testing.T) {
	krulestest.Check(t)
	var s stamp
	p := newProcess(t, 8, mmnotifier.WithPageFault(s.fill))
	rec := registerLog(t, p)
	mem := p.Bytes()
	mem[pg], mem[2*pg] = 1, 2
	require.NoError(t, p.Madvise(pg, 2*pg))
	starts, ends := rec.seen()
	require.Equal(t, []string{span(p, 1, 3, mmnotifier.EventClear)}, starts)
	require.Equal(t, 1, ends)
	// The pages are gone: the next touch faults them in anew.
	faults := p.Stats().Faults
	require.Equal(t, p.Addr()+pg, binary.LittleEndian.Uint64(mem[pg:]))
	require.Zero(t, mem[2*pg+16])
	p.Sync()
	require.Equal(t, faults+2, p.Stats().Faults)
	require.Equal(t, mmnotifier.Stats{Faults: faults + 2, Events: 1, Foreign: 0}, p.Stats(),
		"the REMOVE event was read, and known as the process's own")

	require.True(t, whileReadLocked(p.MM(), 5*time.Second, func() { _ = p.Madvise(pg, pg) }),
		"madvise takes mmap_lock for reading")
	require.False(t, whileReadLocked(p.MM(), 50*time.Millisecond, func() { _ = p.Munmap(7*pg, pg) }),
		"munmap takes it for writing")
	starts, _ = rec.seen()

	require.NoError(t, p.Madvise(0, 0), "a zero length does nothing (do_madvise)")
	again, _ := rec.seen()
	require.Equal(t, starts, again, "and invalidates nothing")
}

func TestProcessMunmapMmapAndMremap(t *testing.T) {
	krulestest.Check(t)
	p := newProcess(t, 8)
	rec := registerLog(t, p)
	mem := p.Bytes()
	// Byte by byte, not copy: a first touch inside the runtime's memmove
	// cannot be preempted, and a garbage collection would wait for it (see
	// Process).
	for i, c := range []byte("moving") {
		mem[int(pg)+i] = c
	}

	require.NoError(t, p.Mremap(pg, 5*pg, pg))
	require.Equal(t, "moving", string(mem[5*pg:5*pg+6]), "the contents moved")
	require.NoError(t, p.Munmap(6*pg, 2*pg))
	require.NoError(t, p.Mmap(pg, pg)) // fill the hole Mremap left
	require.Zero(t, mem[pg])
	require.Error(t, p.Mremap(6*pg, 0, pg), "the source is not mapped")

	p.Sync()
	starts, ends := rec.seen()
	require.Equal(t, []string{
		span(p, 5, 6, mmnotifier.EventUnmap), // mremap: the destination's old pages
		span(p, 1, 2, mmnotifier.EventUnmap), // and the source
		span(p, 6, 8, mmnotifier.EventUnmap), // munmap
		span(p, 1, 2, mmnotifier.EventUnmap), // mmap(MAP_FIXED)
	}, starts)
	require.Equal(t, 4, ends)
	require.Zero(t, p.Stats().Foreign)
	require.Positive(t, p.Stats().Events)
}

// HMMRangeFault on the process's address space faults missing pages in
// through the same fault path, refuses unmapped ones, and reports them as
// errors when not asked to fault.
func TestProcessHMMRangeFault(t *testing.T) {
	krulestest.Check(t)
	var s stamp
	p := newProcess(t, 8, mmnotifier.WithPageFault(s.fill))
	mm := p.MM()
	sub, err := mmnotifier.InsertInterval(mm, p.Addr(), p.Len(), lockingInterval{driverLock()})
	require.NoError(t, err)
	t.Cleanup(sub.Remove)
	require.NoError(t, p.Munmap(6*pg, pg))

	r := mmnotifier.HMMRange{Notifier: sub, Start: p.Addr(), End: p.Addr() + 4*pg,
		PFNs: make([]uint64, 4), DefaultFlags: mmnotifier.HMMPFNReqFault}
	r.NotifierSeq = sub.ReadBegin()
	mm.MmapLock().RLock()
	err = mmnotifier.HMMRangeFault(&r)
	mm.MmapLock().RUnlock()
	require.NoError(t, err)
	require.EqualValues(t, 4, p.Stats().Faults, "the device's fault resolved the pages")
	for i, e := range r.PFNs {
		require.Equal(t, (p.Addr()+uint64(i)*pg)/pg|mmnotifier.HMMPFNValid|mmnotifier.HMMPFNWrite, e)
	}
	require.Equal(t, p.Addr()+3*pg, binary.LittleEndian.Uint64(p.Bytes()[3*pg:]), "no CPU fault: the page is there")
	require.EqualValues(t, 4, p.Stats().Faults)

	r.Start, r.End = p.Addr()+5*pg, p.Addr()+7*pg
	r.NotifierSeq = sub.ReadBegin()
	mm.MmapLock().RLock()
	err = mmnotifier.HMMRangeFault(&r)
	mm.MmapLock().RUnlock()
	require.ErrorIs(t, err, mmnotifier.ErrFault)

	r.DefaultFlags = 0 // a snapshot: the unmapped page is an error entry (hmm_vma_walk_hole)
	r.NotifierSeq = sub.ReadBegin()
	mm.MmapLock().RLock()
	err = mmnotifier.HMMRangeFault(&r)
	mm.MmapLock().RUnlock()
	require.NoError(t, err)
	require.Equal(t, mmnotifier.HMMPFNError, r.PFNs[1])

	// Page 7 was never touched: a snapshot says 0 and faults nothing.
	faults := p.Stats().Faults
	r.Start, r.End = p.Addr()+7*pg, p.Addr()+8*pg
	r.NotifierSeq = sub.ReadBegin()
	mm.MmapLock().RLock()
	err = mmnotifier.HMMRangeFault(&r)
	mm.MmapLock().RUnlock()
	require.NoError(t, err)
	require.Zero(t, r.PFNs[0])
	require.Equal(t, faults, p.Stats().Faults)

	// An invalidation since ReadBegin fails the walk.
	r.DefaultFlags = mmnotifier.HMMPFNReqFault
	r.NotifierSeq = sub.ReadBegin()
	require.NoError(t, p.Madvise(7*pg, pg))
	mm.MmapLock().RLock()
	err = mmnotifier.HMMRangeFault(&r)
	mm.MmapLock().RUnlock()
	require.ErrorIs(t, err, mmnotifier.ErrBusy)
}

// Ranges outside the memory are refused with EINVAL, and so is an mremap
// whose ranges overlap, as mremap(2) refuses it: none reaches a notifier.
func TestProcessRefusesBadRanges(t *testing.T) {
	krulestest.Check(t)
	p := newProcess(t, 4)
	rec := registerLog(t, p)
	require.ErrorIs(t, p.Madvise(p.Len(), pg), mmnotifier.ErrInvalid)
	require.NoError(t, p.Madvise(p.Len(), 0), "do_madvise: a zero length does nothing")
	require.ErrorIs(t, p.Madvise(1, 0), mmnotifier.ErrInvalid, "misaligned, though of zero length")
	require.ErrorIs(t, p.Munmap(p.Len()-pg, 2*pg), mmnotifier.ErrInvalid)
	require.ErrorIs(t, p.Mremap(0, pg, 2*pg), mmnotifier.ErrInvalid, "overlapping")
	starts, _ := rec.seen()
	require.Empty(t, starts)
}

// madvise over a hole drops the mapped pages and says ENOMEM; the process
// expects the REMOVE events of the mapped pages only, so Sync returns.
func TestProcessMadviseOverAHole(t *testing.T) {
	krulestest.Check(t)
	p := newProcess(t, 4)
	require.NoError(t, p.Munmap(2*pg, pg))
	require.ErrorIs(t, p.Madvise(pg, 3*pg), mmnotifier.ErrNoMem)
	synced := make(chan struct{})
	go func() {
		defer close(synced)
		p.Sync()
	}()
	select {
	case <-synced:
	case <-time.After(5 * time.Second):
		t.Fatal("Sync waits for REMOVE events of the hole")
	}
	require.Zero(t, p.Stats().Foreign)
}

// Close tears the address space down: its notifiers are released.
func TestProcessCloseReleasesTheNotifiers(t *testing.T) {
	krulestest.Check(t)
	rec := &recorder{}
	// Registered first, so it runs after newProcess's Close.
	t.Cleanup(func() { require.Equal(t, []string{"n.release"}, rec.whats()) })
	p := newProcess(t, 2)
	_, err := mmnotifier.Register(p.MM(), &recNotifier{"n", rec})
	require.NoError(t, err)
}

// Without a WithPageFault function HMMRangeFault maps each run of missing
// pages at once, across the windows it walks the range in: zeroed pages
// for a write, the zero page for a read; pages already present keep their
// contents, and each missing page is counted once.
func TestProcessHMMRangeFaultMapsMissingRuns(t *testing.T) {
	for _, flags := range []uint64{mmnotifier.HMMPFNReqFault | mmnotifier.HMMPFNReqWrite, mmnotifier.HMMPFNReqFault} {
		t.Run(fmt.Sprintf("flags=%#x", flags), func(t *testing.T) {
			krulestest.Check(t)
			const pages = 150
			p := newProcess(t, pages)
			mm := p.MM()
			sub, err := mmnotifier.InsertInterval(mm, p.Addr(), p.Len(), lockingInterval{driverLock()})
			require.NoError(t, err)
			t.Cleanup(sub.Remove)
			touched := []int{2, 3, 63, 64, 70, 149}
			for _, i := range touched {
				p.Bytes()[i*pg+1] = byte(i)
			}
			require.EqualValues(t, len(touched), p.Stats().Faults, "the CPU's faults")

			r := mmnotifier.HMMRange{Notifier: sub, Start: p.Addr(), End: p.Addr() + pages*pg,
				PFNs: make([]uint64, pages), DefaultFlags: flags}
			r.NotifierSeq = sub.ReadBegin()
			mm.MmapLock().RLock()
			err = mmnotifier.HMMRangeFault(&r)
			mm.MmapLock().RUnlock()
			require.NoError(t, err)
			for i, e := range r.PFNs {
				require.Equal(t, (p.Addr()+uint64(i)*pg)/pg|mmnotifier.HMMPFNValid|mmnotifier.HMMPFNWrite, e, "page %d", i)
			}
			require.EqualValues(t, pages, p.Stats().Faults, "each missing page once, by the device")
			for i := range pages {
				want := byte(0)
				if slices.Contains(touched, i) {
					want = byte(i)
				}
				require.Equal(t, want, p.Bytes()[i*pg+1], "page %d", i)
				p.Bytes()[i*pg] = 1 // present: no fault, for the zero page neither
			}
			require.EqualValues(t, pages, p.Stats().Faults, "the pages were all there")
		})
	}
}

// The GFP_KERNEL-in-callback bug on real memory: the first madvise that
// reaches a callback taking a lock held across a GFP_KERNEL allocation is
// a circular dependency, with no memory pressure.
func TestProcessCallbackLockHeldAcrossAllocationIsACycle(t *testing.T) {
	for _, kind := range []string{"list", "interval"} {
		t.Run(kind, func(t *testing.T) {
			rec := krulestest.Record(t)
			p := newProcess(t, 4)
			mu := driverLock()
			if kind == "list" {
				sub, err := mmnotifier.Register(p.MM(), lockingNotifier{mu})
				require.NoError(t, err)
				t.Cleanup(sub.Unregister)
			} else {
				sub, err := mmnotifier.InsertInterval(p.MM(), p.Addr(), p.Len(), lockingInterval{mu})
				require.NoError(t, err)
				t.Cleanup(sub.Remove)
			}
			allocUnder(t, p.MM(), mu)
			require.Empty(t, rec.Reports())
			p.Bytes()[0] = 1
			require.NoError(t, p.Madvise(0, pg))
			requireCircular(t, rec, "&drv->lock", "mmu_notifier_invalidate_range_start", "fs_reclaim")
		})
	}
}

// A madvise may sleep, as the kernel's does: from a non-block section it
// is reported, and still done.
func TestProcessMadviseMightSleep(t *testing.T) {
	rec := krulestest.Record(t)
	p := newProcess(t, 2)
	p.Bytes()[0] = 1
	nonblock.Start()
	err := p.Madvise(0, pg)
	nonblock.End()
	require.NoError(t, err)
	require.NotEmpty(t, rec.Kinds())
	require.Equal(t, krules.SleepInAtomic, rec.Kinds()[0])
	require.Contains(t, rec.Reports()[0].Headline, "BUG: sleeping function called from invalid context at ")
	require.Contains(t, rec.Reports()[0].Text, "non_block: 1")
	p.Sync()
	require.EqualValues(t, 1, p.Stats().Events)
}
