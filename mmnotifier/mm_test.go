package mmnotifier_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
)

func TestMappingsAndFaults(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	a, err := mm.Mmap(3*pg, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	b, err := mm.Mmap(1, mmnotifier.ProtRead) // rounded up to a page
	require.NoError(t, err)
	require.Equal(t, a+3*pg, b, "lowest free address")
	require.NoError(t, mm.Unmap(a+pg, pg))
	c, err := mm.Mmap(pg, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	require.Equal(t, a+pg, c, "the hole is reused")

	_, err = mm.Fault(b, true)
	require.ErrorIs(t, err, mmnotifier.ErrFault, "read-only mapping")
	pfn, err := mm.Fault(b, false)
	require.NoError(t, err)
	again, err := mm.Fault(b, false)
	require.NoError(t, err)
	require.Equal(t, pfn, again, "present already")
	_, err = mm.Fault(b+pg, false)
	require.ErrorIs(t, err, mmnotifier.ErrFault, "unmapped")
	require.EqualValues(t, 1, mm.RSS())

	require.ErrorIs(t, mm.Unmap(a+1, pg), mmnotifier.ErrInvalid)
	require.ErrorIs(t, mm.Unmap(a, 0), mmnotifier.ErrInvalid)
	require.ErrorIs(t, mm.Protect(a, 8*pg, mmnotifier.ProtRead), mmnotifier.ErrNoMem, "not all mapped")
	_, err = mm.Fault(a, true)
	require.ErrorIs(t, err, mmnotifier.ErrFault, "what came before the hole was changed, as do_mprotect_pkey leaves it")
	require.NoError(t, mm.Protect(a, 3*pg, mmnotifier.ProtReadWrite))
	require.ErrorIs(t, mm.Discard(a, 8*pg), mmnotifier.ErrNoMem, "holes are skipped and reported")
	_, err = mm.Mmap(0, mmnotifier.ProtRead)
	require.ErrorIs(t, err, mmnotifier.ErrInvalid)

	buf := []byte("across a page boundary") // from a's page into c's
	require.NoError(t, mm.Write(c-5, buf))
	got := make([]byte, len(buf))
	require.NoError(t, mm.Read(c-5, got))
	require.Equal(t, string(buf), string(got))
	require.ErrorIs(t, mm.Write(b, buf), mmnotifier.ErrFault, "read-only")
}

func TestProtectSplitsAndMergesMappings(t *testing.T) {
	krulestest.Check(t)
	mm, rec := recordedMM(t)
	addr := mapTouched(t, mm, 4)
	rec.take()
	require.NoError(t, mm.Protect(addr+pg, 2*pg, mmnotifier.ProtRead))
	_, err := mm.Fault(addr, true)
	require.NoError(t, err, "outside the protected middle")
	_, err = mm.Fault(addr+pg, true)
	require.ErrorIs(t, err, mmnotifier.ErrFault)
	_, err = mm.Fault(addr+3*pg, true)
	require.NoError(t, err)
	rec.take()
	require.NoError(t, mm.Protect(addr, 4*pg, mmnotifier.ProtReadWrite))
	var ranges [][2]uint64
	for _, c := range rec.take() {
		if c.what == "start" {
			ranges = append(ranges, [2]uint64{c.start, c.end})
		}
	}
	require.Equal(t, [][2]uint64{{addr + pg, addr + 3*pg}}, ranges, "only the piece that changes")
	require.NoError(t, mm.Protect(addr, 4*pg, mmnotifier.ProtRead))
	starts := 0
	for _, c := range rec.take() {
		if c.what == "start" {
			starts++
			require.Equal(t, [2]uint64{addr, addr + 4*pg}, [2]uint64{c.start, c.end}, "merged back into one mapping")
		}
	}
	require.Equal(t, 1, starts)
}

// youngNotifier reports every page accessed through its secondary MMU,
// until told otherwise, and counts the questions.
type youngNotifier struct {
	young                  atomic.Bool
	cleared, noFlush, test atomic.Int32
}

func (n *youngNotifier) InvalidateRangeStart(*mmnotifier.Range) error { return nil }
func (n *youngNotifier) ClearFlushYoung(_ *mmnotifier.MM, _, _ uint64) bool {
	n.cleared.Add(1)
	return n.young.Load()
}
func (n *youngNotifier) ClearYoung(_ *mmnotifier.MM, _, _ uint64) bool {
	n.noFlush.Add(1)
	return n.young.Load()
}
func (n *youngNotifier) TestYoung(*mmnotifier.MM, uint64) bool {
	n.test.Add(1)
	return n.young.Load()
}

func TestAccessedBitsAreTheCPUsAndTheNotifiers(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	y := &youngNotifier{}
	_, err := mmnotifier.Register(mm, y)
	require.NoError(t, err)
	addr := mapTouched(t, mm, 2)
	require.True(t, mm.TestYoung(addr), "the CPU touched it")
	require.True(t, mm.ClearYoung(addr+pg, addr+pg+1), "a range that ends inside a page covers it")
	require.True(t, mm.ClearFlushYoung(addr, addr+2*pg))
	require.False(t, mm.ClearFlushYoung(addr, addr+2*pg), "cleared")
	require.False(t, mm.TestYoung(addr))
	y.young.Store(true)
	require.True(t, mm.TestYoung(addr), "the device touched it")
	require.True(t, mm.ClearYoung(addr, addr+pg))
	require.Positive(t, y.test.Load())
}

// ptep_clear_flush_young_notify asks every notifier, with the flush or
// without it, even when the CPU's bit already said yes or another notifier
// did: asking is what clears their bits.
func TestEveryNotifierIsAskedToClearItsYoungBits(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	a, b := &youngNotifier{}, &youngNotifier{}
	for _, n := range []*youngNotifier{a, b} {
		n.young.Store(true)
		_, err := mmnotifier.Register(mm, n)
		require.NoError(t, err)
	}
	addr := mapTouched(t, mm, 1) // the CPU's bit is set too
	require.True(t, mm.ClearFlushYoung(addr, addr+pg))
	for _, n := range []*youngNotifier{a, b} {
		require.EqualValues(t, 1, n.cleared.Load())
		require.Zero(t, n.noFlush.Load())
	}
	_, err := mm.Fault(addr, false)
	require.NoError(t, err)
	require.True(t, mm.ClearYoung(addr, addr+pg))
	for _, n := range []*youngNotifier{a, b} {
		require.EqualValues(t, 1, n.cleared.Load())
		require.EqualValues(t, 1, n.noFlush.Load())
	}
}

// Reclaim gives pages a secondary MMU keeps using a second chance, and
// unmaps the rest.
func TestReclaimSparesPagesTheDeviceUses(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	y := &youngNotifier{}
	y.young.Store(true)
	_, err := mmnotifier.Register(mm, y)
	require.NoError(t, err)
	mapTouched(t, mm, 32)
	require.Zero(t, mm.Zone().Reclaim(32, gfp.Kernel), "all young, to the device")
	require.EqualValues(t, 32, mm.RSS())
	y.young.Store(false)
	require.EqualValues(t, 32, mm.Zone().Reclaim(32, gfp.Kernel))
	require.Zero(t, mm.RSS())
}

func TestReclaimNeedsIO(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	mapTouched(t, mm, 8)
	mm.ClearFlushYoung(0, ^uint64(0))
	require.Zero(t, mm.Zone().Reclaim(8, gfp.NoIO), "swapping out is I/O")
	require.EqualValues(t, 8, mm.Zone().Reclaim(8, gfp.Kernel))
}

// Memory pressure on the zone, with kswapd and direct reclaim, drives
// invalidations of the address space's pages: allocations keep succeeding
// while the notifier sees CLEAR invalidations.
func TestMemoryPressureDrivesInvalidations(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	mm := newMM(t, mmnotifier.WithZone(z))
	f := &mmnotifier.Funcs{End: func(*mmnotifier.Range) {}}
	_, err := mmnotifier.Register(mm, f.Notifier())
	require.NoError(t, err)
	addr, err := mm.Mmap(512*pg, mmnotifier.ProtReadWrite) // 2 MiB
	require.NoError(t, err)
	for i := range uint64(512) {
		_, err := mm.Fault(addr+i*pg, true)
		require.NoError(t, err)
	}
	var pages []*gfp.Page
	for range 600 { // another 2.3 MiB: more than is left
		p, err := z.AllocPages(0, gfp.Kernel)
		require.NoError(t, err)
		pages = append(pages, p)
	}
	// kswapd may still be between a Start and its End: the shrinker holds
	// mmap_lock for read across the pair (shrinkScan), so holding it for
	// write waits for the invalidation under way and keeps the next out
	// while the counts are read.
	mm.MmapLock().Lock()
	c := f.Counts()
	mm.MmapLock().Unlock()
	require.Positive(t, c.Starts, "reclaim unmapped pages of the address space")
	require.Equal(t, c.Starts, c.Ends)
	require.Less(t, mm.RSS(), int64(512))
	for _, p := range pages {
		z.FreePages(p, 0)
	}
}

// A length that overflows when rounded to pages, or that no address space
// can hold, is -ENOMEM, as do_mmap and get_unmapped_area say; it maps
// nothing.
func TestMmapRefusesLengthsTheAddressSpaceCannotHold(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	for _, length := range []uint64{^uint64(0), ^uint64(0) - pg + 2, 1 << 63, 1 << 48} {
		_, err := mm.Mmap(length, mmnotifier.ProtReadWrite)
		require.ErrorIs(t, err, mmnotifier.ErrNoMem, "length %#x", length)
	}
	a, err := mm.Mmap(pg, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	b, err := mm.Mmap(pg, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	require.Equal(t, a+pg, b, "nothing was mapped by the refused calls")

	// What is left up to TASK_SIZE fits exactly; then nothing does.
	_, err = mm.Mmap(1<<47-pg-(b+pg), mmnotifier.ProtNone)
	require.NoError(t, err)
	_, err = mm.Mmap(pg, mmnotifier.ProtReadWrite)
	require.ErrorIs(t, err, mmnotifier.ErrNoMem, "the address space is full")

	// An address space with no users left maps nothing.
	mm.Exit()
	_, err = mm.Mmap(pg, mmnotifier.ProtReadWrite)
	require.ErrorIs(t, err, mmnotifier.ErrInvalid)
}

// heapGrowth returns how many bytes of Go heap f leaves allocated.
func heapGrowth(f func()) int64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return int64(after.HeapAlloc) - int64(before.HeapAlloc)
}

// Page tables are allocated on first touch (__pte_alloc), so a mapping
// that is never touched costs next to nothing however large it is, and
// touching a page of it costs one table, not one entry per page mapped.
func TestHugeMappingsHaveSparsePageTables(t *testing.T) {
	krulestest.Check(t)
	for _, length := range []uint64{64 << 30, 1 << 46} {
		mm := newMM(t)
		var addr uint64
		grew := heapGrowth(func() {
			var err error
			addr, err = mm.Mmap(length, mmnotifier.ProtReadWrite)
			require.NoError(t, err)
		})
		require.Less(t, grew, int64(64<<10), "Mmap(%#x) grew the heap by %d bytes", length, grew)
		last := addr + length - pg
		grew = heapGrowth(func() {
			require.NoError(t, mm.Write(addr, []byte("first")))
			require.NoError(t, mm.Write(last, []byte("last")))
		})
		require.Less(t, grew, int64(64<<10), "two touches grew the heap by %d bytes", grew)
		got := make([]byte, 4)
		require.NoError(t, mm.Read(last, got))
		require.Equal(t, "last", string(got))
		require.EqualValues(t, 2, mm.RSS())
		require.NoError(t, mm.Discard(addr, length))
		require.Zero(t, mm.RSS())
		require.NoError(t, mm.Write(addr+length/2, []byte("middle")))
		require.NoError(t, mm.Protect(addr+length/2, pg, mmnotifier.ProtRead))
		require.NoError(t, mm.Unmap(addr, length))
		require.Zero(t, mm.RSS())
	}
}

// readerProbe is an interval notifier that, on the event it waits for,
// asks another goroutine to take mmap_lock for reading with a trylock,
// as the OOM reaper does, and sends whether it got in.
type readerProbe struct {
	mm    *mmnotifier.MM
	event mmnotifier.Event
	in    chan bool
}

func (p readerProbe) Invalidate(sub *mmnotifier.IntervalNotifier, r *mmnotifier.Range, cur uint64) bool {
	sub.SetSeq(cur)
	if r.Event == p.event {
		got := make(chan bool)
		go func() {
			ok := p.mm.MmapLock().TryRLock()
			if ok {
				p.mm.MmapLock().RUnlock()
			}
			got <- ok
		}()
		p.in <- <-got
	}
	return true
}

// exit_mmap unmaps with mmap_lock held for reading, not writing: the OOM
// reaper's trylock gets in alongside the final UNMAP (which is why
// MMF_OOM_SKIP is set only afterwards).
func TestExitUnmapsUnderTheReadLock(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	addr := mapTouched(t, mm, 2)
	p := readerProbe{mm: mm, event: mmnotifier.EventUnmap, in: make(chan bool, 1)}
	sub, err := mmnotifier.InsertInterval(mm, addr, 2*pg, p)
	require.NoError(t, err)
	mm.Exit()
	require.True(t, <-p.in, "a reader got in during the final unmap")
	require.Zero(t, mm.RSS())
	require.True(t, mm.Reaped(), "MMF_OOM_SKIP once the pages are gone")
	sub.Remove()
	_, err = mm.Fault(addr, false)
	require.ErrorIs(t, err, mmnotifier.ErrFault, "the VMAs are gone too")

	empty := newMM(t)
	empty.Exit()
	require.False(t, empty.Reaped(), "with no VMA exit_mmap goes straight to destroy")
}

// mmput might sleep whether or not it drops the last user: its
// might_sleep comes before the atomic_dec_and_test (kernel/fork.c mmput),
// so a Put in an atomic section is reported even while other users keep
// the address space alive.
func TestPutMightSleepEvenWhenUsersRemain(t *testing.T) {
	mm := newMM(t)
	mm.Get()
	rec := krulestest.Record(t)
	atomically(func() { mm.Put() })
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	require.Equal(t, 1, mm.Users(), "the Put still dropped its user")
}

// Each call checks its arguments as its system call does: munmap refuses an
// empty range and one reaching past TASK_SIZE (do_vmi_munmap); mprotect and
// madvise do nothing for a zero length (do_mprotect_pkey, do_madvise); a
// range that wraps around is ENOMEM for mprotect and EINVAL for madvise.
// None of the refusals invalidates anything.
func TestArgumentsAreCheckedAsTheSystemCallsDo(t *testing.T) {
	krulestest.Check(t)
	mm, rec := recordedMM(t)
	a := mapTouched(t, mm, 1)
	rec.take()
	require.ErrorIs(t, mm.Unmap(a, 0), mmnotifier.ErrInvalid)
	require.ErrorIs(t, mm.Unmap(1<<47, pg), mmnotifier.ErrInvalid, "past TASK_SIZE")
	require.ErrorIs(t, mm.Unmap(a, 1<<47), mmnotifier.ErrInvalid, "reaching past TASK_SIZE")
	require.NoError(t, mm.Protect(a, 0, mmnotifier.ProtRead))
	require.NoError(t, mm.Discard(a, 0))
	require.ErrorIs(t, mm.Protect(a, ^uint64(0)-pg, mmnotifier.ProtRead), mmnotifier.ErrNoMem, "wraps around")
	require.ErrorIs(t, mm.Discard(a, ^uint64(0)-pg), mmnotifier.ErrInvalid, "wraps around")
	// A length that page alignment rounds to zero: mprotect's end <= start
	// is ENOMEM, madvise's len_in && !len EINVAL.
	require.ErrorIs(t, mm.Protect(a, ^uint64(0), mmnotifier.ProtRead), mmnotifier.ErrNoMem, "rounds to zero")
	require.ErrorIs(t, mm.Discard(a, ^uint64(0)), mmnotifier.ErrInvalid, "rounds to zero")
	require.ErrorIs(t, mm.Protect(a+1, pg, mmnotifier.ProtRead), mmnotifier.ErrInvalid)
	require.ErrorIs(t, mm.Discard(a+1, pg), mmnotifier.ErrInvalid)
	// The alignment is checked before the length (do_mprotect_pkey, do_madvise).
	require.ErrorIs(t, mm.Protect(a+1, 0, mmnotifier.ProtRead), mmnotifier.ErrInvalid, "misaligned, zero length")
	require.ErrorIs(t, mm.Discard(a+1, 0), mmnotifier.ErrInvalid, "misaligned, zero length")
	require.Empty(t, rec.take())
	_, err := mm.Fault(a, true)
	require.NoError(t, err, "still mapped and writable")
}

// A migration that cannot allocate its destination pages gives back those
// it had and invalidates nothing: the pages are allocated before the
// invalidation starts, as a driver allocates them before migrate_vma_setup.
func TestMigrateThatCannotAllocateGivesBackItsPages(t *testing.T) {
	krulestest.Check(t)
	mm, rec := recordedMM(t)
	addr := mapTouched(t, mm, 2)
	rec.take()
	z := mm.Zone()
	before := z.Stats()
	fail := gfp.NewFaultAttr(100, 1) // fail_page_alloc: the second page fails
	fail.IgnoreGFPWait, fail.IgnoreGFPHighmem, fail.MinOrder, fail.Space, fail.Verbose = false, false, 0, 2, 0
	z.InjectPageAllocFaults(fail)
	_, err := mm.Migrate(addr, 2*pg, nil)
	z.InjectPageAllocFaults(nil)
	require.Error(t, err)
	require.Equal(t, 1, fail.Failures())
	after := z.Stats()
	require.Equal(t, before.Free+before.PCP, after.Free+after.PCP, "the first page is free again")
	require.Empty(t, rec.take())
}

// Migrate returns the pages it moved: a page discarded by another thread
// while the migration's invalidation ran is neither moved nor counted, and
// the destination page allocated for it goes back to the zone.
func TestMigrateCountsThePagesItMoved(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	addr := mapTouched(t, mm, 2)
	discarded := false // on the test's goroutine, which migrates
	f := &mmnotifier.Funcs{Start: func(r *mmnotifier.Range) error {
		if r.Event == mmnotifier.EventMigrate && !discarded {
			discarded = true
			done := make(chan error)
			go func() { done <- mm.Discard(addr, pg) }()
			require.NoError(t, <-done)
		}
		return nil
	}}
	_, err := mmnotifier.Register(mm, f.Notifier())
	require.NoError(t, err)
	before := mm.Zone().Stats()
	n, err := mm.Migrate(addr, 2*pg, nil)
	require.NoError(t, err)
	require.True(t, discarded)
	require.Equal(t, 1, n)
	require.EqualValues(t, 1, mm.RSS())
	after := mm.Zone().Stats()
	require.Equal(t, before.Free+before.PCP+1, after.Free+after.PCP, "one page fewer in use, and no spare")
}

// vma_merge joins a piece whose protection goes back to that of its neighbours,
// the following mapping included, and never across a hole.
func TestProtectMergesOnlyAdjacentMappings(t *testing.T) {
	krulestest.Check(t)
	mm, rec := recordedMM(t)
	addr := mapTouched(t, mm, 4)
	require.NoError(t, mm.Unmap(addr+2*pg, pg)) // [0, 2) and [3, 4), read-write
	require.NoError(t, mm.Protect(addr, pg, mmnotifier.ProtRead))
	require.NoError(t, mm.Protect(addr, pg, mmnotifier.ProtReadWrite)) // joins page 1 again
	require.NoError(t, mm.Protect(addr+3*pg, pg, mmnotifier.ProtRead))
	require.NoError(t, mm.Protect(addr+3*pg, pg, mmnotifier.ProtReadWrite)) // [0, 2) is across the hole
	_, err := mm.Fault(addr+2*pg, false)
	require.ErrorIs(t, err, mmnotifier.ErrFault, "the hole stays a hole")
	rec.take()
	require.NoError(t, mm.Protect(addr, 2*pg, mmnotifier.ProtRead))
	var starts [][2]uint64
	for _, c := range rec.take() {
		if c.what == "start" {
			starts = append(starts, [2]uint64{c.start, c.end})
		}
	}
	require.Equal(t, [][2]uint64{{addr, addr + 2*pg}}, starts, "one mapping again")
}

// An anonymous page is zeroed when a fault maps it (do_anonymous_page):
// after madvise(MADV_DONTNEED) the next touch reads zeroes, whatever the
// page the zone hands out held before.
func TestDiscardedPagesComeBackZeroed(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	addr := mapTouched(t, mm, 1)
	require.NoError(t, mm.Write(addr, []byte("secret")))
	require.NoError(t, mm.Discard(addr, pg))
	got := make([]byte, 6)
	require.NoError(t, mm.Read(addr, got))
	require.Equal(t, make([]byte, 6), got)
}

// Changes to the mappings take mmap_lock for writing (mmap, munmap,
// mprotect, clear_refs' soft-dirty reset); madvise(MADV_DONTNEED),
// migrate_vma and faults take it for reading and run beside a reader.
func TestOperationsTakeMmapLockInTheKernelsMode(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	addr := mapTouched(t, mm, 2)
	const blocked, free = 50 * time.Millisecond, 5 * time.Second
	require.False(t, whileReadLocked(mm, blocked, func() { _, _ = mm.Mmap(pg, mmnotifier.ProtRead) }), "mmap")
	require.False(t, whileReadLocked(mm, blocked, func() { _ = mm.Protect(addr, pg, mmnotifier.ProtRead) }), "mprotect")
	require.False(t, whileReadLocked(mm, blocked, mm.ClearSoftDirty), "clear_refs")
	require.True(t, whileReadLocked(mm, free, func() { _ = mm.Discard(addr+pg, pg) }), "madvise")
	require.True(t, whileReadLocked(mm, free, func() { _, _ = mm.Migrate(addr, 2*pg, nil) }), "migrate_vma")
	require.True(t, whileReadLocked(mm, free, func() { _, _ = mm.Fault(addr+pg, true) }), "fault")
	require.False(t, whileReadLocked(mm, blocked, func() { _ = mm.Unmap(addr, 2*pg) }), "munmap")
}

// An address space belongs to the goroutine that made it, unless WithTask
// names another: the OOM reaper's messages say "pid:N (comm)" of it.
func TestAddressSpaceIsNamedAfterItsGoroutine(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 1<<20, gfp.WithoutKswapd())
	mm := mmnotifier.NewMM(mmnotifier.WithZone(z))
	defer mm.Exit()
	g := krules.CurrentGoroutine()
	require.Equal(t, fmt.Sprintf("pid:%d (%s)", g.ID, g.Name), mm.String())
}

// Reclaim's clock hand moves on from one VMA to the next within a scan:
// pages no one touched since the last pass go, in every VMA.
func TestReclaimWalksEveryVMA(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	mapTouched(t, mm, 4)
	b, err := mm.Mmap(4*pg, mmnotifier.ProtRead)
	require.NoError(t, err)
	for i := range uint64(4) {
		_, err := mm.Fault(b+i*pg, false)
		require.NoError(t, err)
	}
	mm.ClearFlushYoung(0, ^uint64(0))
	require.EqualValues(t, 8, mm.Zone().Reclaim(8, gfp.Kernel))
	require.Zero(t, mm.RSS())
}

// Reclaim invalidates only what it unmaps: runs of resident pages, not the
// holes between them, and no more pages than a scan asks for.
func TestReclaimInvalidatesOnlyWhatItUnmaps(t *testing.T) {
	krulestest.Check(t)
	mm, rec := recordedMM(t)
	addr, err := mm.Mmap(3*pg, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	for _, a := range []uint64{addr, addr + 2*pg} {
		_, err := mm.Fault(a, true)
		require.NoError(t, err)
	}
	mm.ClearFlushYoung(0, ^uint64(0))
	rec.take()
	require.EqualValues(t, 2, mm.Zone().Reclaim(2, gfp.Kernel))
	var starts [][2]uint64
	for _, c := range rec.take() {
		if c.what == "start" {
			require.Equal(t, mmnotifier.EventClear, c.event)
			starts = append(starts, [2]uint64{c.start, c.end})
		}
	}
	require.Equal(t, [][2]uint64{{addr, addr + pg}, {addr + 2*pg, addr + 3*pg}}, starts)

	// A scan asks for a batch: a larger address space keeps the rest.
	mapTouched(t, mm, 2*gfp.ShrinkBatch)
	mm.ClearFlushYoung(0, ^uint64(0))
	mm.Zone().Reclaim(1, gfp.Kernel)
	require.GreaterOrEqual(t, mm.RSS(), int64(gfp.ShrinkBatch))
}
