package gfp_test

import (
	"errors"
	"syscall"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
)

func TestAllocPagesGivesDistinctWritableBlocks(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 8<<20)
	seen := map[uint64]bool{}
	var blocks []*gfp.Page
	for order := range 5 {
		for range 4 {
			p, err := z.AllocPages(order, gfp.Kernel)
			require.NoError(t, err)
			require.Equal(t, order, p.Order())
			require.Len(t, p.Bytes(), gfp.PageSize<<order)
			require.Zero(t, p.PFN()%(1<<order), "blocks are aligned to their order")
			for i := range uint64(1) << order {
				require.False(t, seen[p.PFN()+i], "page %d handed out twice", p.PFN()+i)
				seen[p.PFN()+i] = true
			}
			b := p.Bytes()
			b[0], b[len(b)-1] = byte(order), byte(order)
			require.Equal(t, p, z.PageByPFN(p.PFN()))
			require.Equal(t, p, z.PageOf(b))
			require.Equal(t, p.PFN(), uint64(uintptr(unsafe.Pointer(&b[0])))/gfp.PageSize, "frame numbers are addresses")
			blocks = append(blocks, p)
		}
	}
	for _, p := range blocks {
		require.Equal(t, byte(p.Order()), p.Bytes()[0], "nobody else wrote the block")
		gfp.FreePages(p, p.Order())
	}
	require.Equal(t, int64(z.Pages()), accounted(z))
}

func TestZeroFlagZeroes(t *testing.T) {
	z := newZone(t, 1<<20, gfp.WithShards(1))
	p, err := z.AllocPages(1, gfp.Kernel)
	require.NoError(t, err)
	for i := range p.Bytes() {
		p.Bytes()[i] = 0xaa
	}
	z.FreePages(p, 1)
	q, err := z.AllocPages(1, gfp.Kernel|gfp.Zero)
	require.NoError(t, err)
	require.Equal(t, p, q, "the cached block is reused")
	require.Equal(t, make([]byte, 2*gfp.PageSize), q.Bytes())
	z.FreePages(q, 1)
}

func TestBadFreesAreReportedAndIgnored(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 1<<20)
	other := newZone(t, 1<<20, gfp.WithName("Other"))
	p, err := z.AllocPages(2, gfp.Kernel)
	require.NoError(t, err)
	before := z.Stats()

	z.FreePages(p, 1) // wrong order
	require.Equal(t, []krules.Kind{krules.BadPage}, rec.Kinds())
	require.Regexp(t, `^BUG: Bad page state in process TestBadFreesAreReportedAndIgnored  pfn:[0-9a-f]{5,}$`, rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "page dumped because: freed with order 1, allocated with order 2\n")

	z.FreePages(z.PageByPFN(p.PFN()+1), 0) // a tail page
	require.Contains(t, rec.Last().Text, "page dumped because: not the head of an allocated block\n")

	other.FreePages(p, 2) // the wrong zone
	require.Contains(t, rec.Last().Text, "page dumped because: page of zone Normal freed to zone Other\n")

	gfp.FreePages(&gfp.Page{}, 0) // not a page of any zone
	require.Contains(t, rec.Last().Text, "page dumped because: page does not belong to any zone\n")
	require.Equal(t, 4, rec.Len())
	require.Equal(t, before.Free, z.Stats().Free, "nothing was freed")

	z.FreePages(p, 2)
	require.Equal(t, 4, rec.Len())
	z.FreePages(p, 2) // double free
	require.Equal(t, 5, rec.Len())
	require.Contains(t, rec.Last().Text, "page dumped because: page already free (double free)\n")
	require.Equal(t, int64(z.Pages()), accounted(z))

	z.FreePages(nil, 0) // ignored
	require.Equal(t, 5, rec.Len())

	// An order past MAX_PAGE_ORDER is refused before the page's state is
	// looked at, even one whose low bits name the block's order.
	q, err := z.AllocPages(2, gfp.Kernel)
	require.NoError(t, err)
	z.FreePages(q, 2+1<<24)
	require.Equal(t, 6, rec.Len())
	require.Contains(t, rec.Last().Text, "page dumped because: freed with order 16777218 > MAX_PAGE_ORDER\n")
	require.Contains(t, rec.Last().Text, "page: refcount:1 mapcount:0 ", "dump_page of an allocated block")
	z.FreePages(q, 2)

	// A large kmalloc's block is not FreePages': reported, refcount 1.
	b, err := z.Alloc(3*gfp.PageSize, gfp.Kernel)
	require.NoError(t, err)
	z.FreePages(z.PageOf(b), 2)
	require.Equal(t, 7, rec.Len())
	require.Contains(t, rec.Last().Text, "page: refcount:1 mapcount:0 ")
	require.Contains(t, rec.Last().Text, "page dumped because: freeing a large_kmalloc page as allocated\n")
	z.Free(b)
	for _, r := range rec.Reports() {
		require.Equal(t, krules.BadPage, r.Kind)
	}
	require.Equal(t, int64(z.Pages()), accounted(z))
}

// pfn_to_page covers the zone's span exactly; InUse is true for the head
// of an allocated block only: not its tail pages, not a page freed to the
// per-CPU-style lists.
func TestPageByPFNAndInUse(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 1<<20)
	require.Nil(t, z.PageByPFN(z.StartPFN()+uint64(z.Pages())))
	require.Nil(t, z.PageByPFN(z.StartPFN()-1))
	require.NotNil(t, z.PageByPFN(z.StartPFN()+uint64(z.Pages())-1))

	p, err := z.AllocPages(1, gfp.Kernel)
	require.NoError(t, err)
	require.True(t, p.InUse())
	require.False(t, z.PageByPFN(p.PFN()+1).InUse(), "a tail page")
	z.FreePages(p, 1)
	require.False(t, p.InUse(), "freed, if only to a page cache")
}

// Of two racing frees of one page, exactly one is bad. 200 races run on
// four zones, 50 each, since a zone reports 60 bad pages a minute at most
// (bad_page's burst).
func TestDoubleFreeRaceHasOneWinner(t *testing.T) {
	rec := krulestest.Record(t)
	for i := range 4 {
		z := newZone(t, 1<<20)
		for range 50 {
			p, err := z.AllocPages(0, gfp.Kernel)
			require.NoError(t, err)
			done := make(chan struct{})
			go func() { z.FreePages(p, 0); close(done) }()
			z.FreePages(p, 0)
			<-done
		}
		require.Equal(t, 50*(i+1), rec.Len(), "exactly one of each pair of frees is bad")
		require.Equal(t, int64(z.Pages()), accounted(z))
	}
}

func TestOrderAboveMaxWarnsOnceAndFails(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 1<<20)
	_, err := z.AllocPages(gfp.MaxOrder+1, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, []krules.Kind{krules.GFPMisuse}, rec.Kinds())
	require.Regexp(t, `^WARNING: CPU: - PID: \d+ at gfp/zone_test.go:\d+ gfp_test.TestOrderAboveMaxWarnsOnceAndFails\+0x`, rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "order 11 > MAX_PAGE_ORDER (10), mode:0xcc0(GFP_KERNEL)\n")
	_, err = z.AllocPages(gfp.MaxOrder+1, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, 1, rec.Len(), "WARN_ON_ONCE")
	_, err = z.AllocPages(-1, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
}

func TestMaxOrderBlockAndMergeBack(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 8<<20, gfp.WithMinFreeKbytes(128))
	p, err := z.AllocPages(gfp.MaxOrder, gfp.Kernel)
	require.NoError(t, err)
	require.Len(t, p.Bytes(), 4<<20)
	z.FreePages(p, gfp.MaxOrder)
	require.Equal(t, int64(2), z.Stats().FreeBlocks[gfp.MaxOrder], "the zone is two whole top-order blocks again")
}

func TestClosedZone(t *testing.T) {
	z, err := gfp.NewZone(1 << 20)
	require.NoError(t, err)
	p, err := z.AllocPages(0, gfp.Kernel)
	require.NoError(t, err)
	err = z.Close()
	require.ErrorContains(t, err, "1 pages still allocated")
	_, err = z.AllocPages(0, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrClosed)
	_, err = z.Alloc(8, gfp.Kernel)
	require.ErrorIs(t, err, gfp.ErrClosed)
	p.Bytes()[0] = 1 // still mapped
	z.FreePages(p, 0)
	require.NoError(t, z.Close(), "Close is idempotent")
}

func TestArenaBackings(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 1<<20, gfp.WithPortableArena())
	kind, locked := z.Backing()
	require.Equal(t, "heap", kind)
	require.False(t, locked)
	p, err := z.AllocPages(3, gfp.Kernel)
	require.NoError(t, err)
	p.Bytes()[gfp.PageSize*8-1] = 1
	require.Zero(t, p.PFN()%8)
	z.FreePages(p, 3)

	_, err = gfp.NewZone(1<<20, gfp.WithPortableArena(), gfp.WithMlock())
	require.Error(t, err, "a heap arena cannot be locked")

	z2 := newZone(t, 4<<20, gfp.WithHugePages())
	kind, _ = z2.Backing()
	require.Contains(t, []string{"mmap+hugetlb", "mmap+thp", "mmap"}, kind)

	z3, err := gfp.NewZone(1<<20, gfp.WithMlock())
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.EAGAIN) {
		t.Logf("mlock refused here: %v", err)
		return
	}
	require.NoError(t, err)
	_, locked = z3.Backing()
	require.True(t, locked)
	require.NoError(t, z3.Close())
}

func TestZoneValidation(t *testing.T) {
	_, err := gfp.NewZone(0)
	require.Error(t, err)
	_, err = gfp.NewZone(1<<20, gfp.WithWatermarkScaleFactor(0))
	require.Error(t, err)
	_, err = gfp.NewZone(1<<20, gfp.WithWatermarkScaleFactor(3001))
	require.Error(t, err, "the sysctl's extra2 is 3000")
	newZone(t, 1<<20, gfp.WithWatermarkScaleFactor(3000))
	_, err = gfp.NewZone(1<<20, gfp.WithMinFreeKbytes(-1))
	require.Error(t, err)
	z := newZone(t, 1<<20, gfp.WithName("DMA32"))
	require.Equal(t, "DMA32", z.Name())
	require.Equal(t, 256, z.Pages())
}

// Close racing allocations in flight: an allocation that passed the closed
// check on entry must not take a page from an arena Close is about to
// unmap (it would zero it: SIGSEGV). Either Close sees the page allocated
// and keeps the arena, or the allocation fails with ErrClosed.
func TestCloseFencesAllocationsInFlight(t *testing.T) {
	for n := range 2000 {
		z, err := gfp.NewZone(1<<20, gfp.WithoutKswapd())
		require.NoError(t, err)
		started, done := make(chan struct{}), make(chan error)
		go func() {
			for i := 0; ; i++ {
				if n%2 == 0 {
					p, err := z.AllocPages(0, gfp.Kernel|gfp.Zero)
					if err != nil {
						done <- err
						return
					}
					z.FreePages(p, 0)
				} else {
					b, err := z.Alloc(96, gfp.Kernel|gfp.Zero)
					if err != nil {
						done <- err
						return
					}
					z.Free(b)
				}
				if i == 0 {
					close(started)
				}
			}
		}()
		<-started
		cerr := z.Close()
		require.ErrorIs(t, <-done, gfp.ErrClosed)
		if cerr != nil {
			// The last page was in the goroutine's hands at Close: the
			// arena stays mapped, and the page may come back.
			require.ErrorContains(t, cerr, "still allocated")
		}
	}
}

// __free_one_page merges buddies up to MAX_PAGE_ORDER: the two halves of
// a top-order block, freed one after the other, become that block again.
func TestTopOrderHalvesMergeBack(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 8<<20, gfp.WithMinFreeKbytes(128))
	a, err := z.AllocPages(gfp.MaxOrder-1, gfp.Kernel)
	require.NoError(t, err)
	b, err := z.AllocPages(gfp.MaxOrder-1, gfp.Kernel)
	require.NoError(t, err)
	require.Equal(t, int64(1), z.Stats().FreeBlocks[gfp.MaxOrder], "both halves came from one top-order block")
	z.FreePages(a, gfp.MaxOrder-1)
	z.FreePages(b, gfp.MaxOrder-1)
	st := z.Stats()
	require.Equal(t, int64(2), st.FreeBlocks[gfp.MaxOrder])
	require.Zero(t, st.FreeBlocks[gfp.MaxOrder-1])
}

// zone_highsize: a per-CPU list's high mark is the low watermark split
// across the lists, but never less than four batches.
func TestPCPHighIsAtLeastFourBatches(t *testing.T) {
	z := newZone(t, 4<<20, gfp.WithShards(64), gfp.WithoutKswapd())
	require.Contains(t, z.ZoneInfo(), "    cpu: 63\n              count: 0\n              high:  4\n              batch: 1\n")
}

// A per-CPU list that goes over its high mark drains a batch at once, so
// it never holds more than high pages (free_unref_page_commit).
func TestPCPNeverHoldsMoreThanItsHighMark(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t) // one list: high 320 (the low watermark), batch 1
	require.Contains(t, z.ZoneInfo(), "high:  320\n              batch: 1\n")
	var pages []*gfp.Page
	for range 400 {
		p, err := z.AllocPages(0, gfp.Kernel)
		require.NoError(t, err)
		pages = append(pages, p)
	}
	for _, p := range pages {
		z.FreePages(p, 0)
	}
	require.Equal(t, int64(320), z.Stats().PCP)
}

// A per-CPU list is refilled with no more blocks than the caller's
// watermark headroom allows, counted in blocks of the order asked for, so
// that a fast-path allocation never takes the zone below its low
// watermark.
func TestPCPRefillStaysAboveTheWatermark(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 128<<20, gfp.WithShards(1), gfp.WithoutKswapd())
	require.Contains(t, z.ZoneInfo(), "batch: 7\n", "order-1 refills of 3 blocks")
	low := z.Watermarks().Low
	var pages []*gfp.Page
	defer func() {
		for _, p := range pages {
			z.FreePages(p, 0)
		}
	}()
	for range int64(z.Pages()) - (low + 3) {
		p, err := z.AllocPages(0, gfp.Kernel)
		require.NoError(t, err)
		pages = append(pages, p)
	}
	z.DrainPages()
	require.Equal(t, low+3, z.Stats().Free)
	p, err := z.AllocPages(1, gfp.Kernel)
	require.NoError(t, err)
	defer z.FreePages(p, 1)
	st := z.Stats()
	require.Equal(t, low+1, st.Free, "one block: the headroom was 3 pages")
	require.Zero(t, st.PCP)
}

// An empty per-CPU list of order > 0 is refilled with batch >> order
// blocks, not batch blocks: nr_pcp_alloc scales the batch to the order, so
// that a refill moves about batch pages whatever the order.
func TestPCPRefillScalesTheBatchToTheOrder(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 128<<20, gfp.WithShards(1), gfp.WithoutKswapd())
	require.Contains(t, z.ZoneInfo(), "batch: 7\n")
	p, err := z.AllocPages(1, gfp.Kernel)
	require.NoError(t, err)
	defer z.FreePages(p, 1)
	require.Equal(t, int64(2<<1), z.Stats().PCP, "three order-1 blocks taken, one handed out")
}

// A refill takes at least two blocks when the batch is over one, even where
// batch >> order is less (nr_pcp_alloc: max(batch >> order, 2)).
func TestPCPRefillTakesAtLeastTwoBlocks(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 128<<20, gfp.WithShards(1), gfp.WithoutKswapd())
	require.Contains(t, z.ZoneInfo(), "batch: 7\n")
	p, err := z.AllocPages(3, gfp.Kernel)
	require.NoError(t, err)
	defer z.FreePages(p, 3)
	require.Equal(t, int64(1<<3), z.Stats().PCP, "two order-3 blocks taken, one handed out")
}

// bad_page's rate limit: of a burst of bad frees on one zone, 60 are
// reported and the rest, within the minute, are not; another zone has a
// burst of its own.
func TestBadPageReportsABurstOf60(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 1<<20)
	p, err := z.AllocPages(1, gfp.Kernel)
	require.NoError(t, err)
	tail := z.PageByPFN(p.PFN() + 1)
	for range 65 {
		z.FreePages(tail, 0)
	}
	require.Equal(t, 60, rec.Len())
	for _, r := range rec.Reports() {
		require.Equal(t, krules.BadPage, r.Kind)
		require.Zero(t, r.Suppressed)
	}
	other := newZone(t, 1<<20, gfp.WithName("Other"))
	other.FreePages(p, 1)
	require.Equal(t, 61, rec.Len(), "a zone's limit is its own")
	require.Contains(t, rec.Last().Text, "page dumped because: page of zone Normal freed to zone Other\n")
	z.FreePages(p, 1)
}
