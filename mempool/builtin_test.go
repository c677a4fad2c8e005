package mempool_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mempool"
)

func newZone(t *testing.T, size int, opts ...gfp.ZoneOption) *gfp.Zone {
	t.Helper()
	z, err := gfp.NewZone(size, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, z.Close()) })
	return z
}

// failPages makes every non-blocking page allocation of z fail from now on.
func failPages(z *gfp.Zone) {
	a := gfp.NewFaultAttr(100, 1)
	a.Times, a.Verbose, a.MinOrder = -1, 0, 0
	z.InjectPageAllocFaults(a)
}

// mempool_create_page_pool takes any order the page allocator does, up to
// MAX_PAGE_ORDER inclusive.
func TestPagePoolOrders(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 16<<20)
	p, err := mempool.NewPagePool(1, z, gfp.MaxOrder)
	require.NoError(t, err)
	pg, ok := p.AllocPreallocated()
	require.True(t, ok)
	require.Len(t, pg.Bytes(), gfp.PageSize<<gfp.MaxOrder)
	p.Free(pg)
	require.NoError(t, p.Close())
	_, err = mempool.NewPagePool(1, z, gfp.MaxOrder+1)
	require.Error(t, err)
	_, err = mempool.NewPagePool(1, z, -1)
	require.Error(t, err)
}

func TestPagePool(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	p, err := mempool.NewPagePool(4, z, 1, mempool.WithName("pages"))
	require.NoError(t, err)
	var held []*gfp.Page
	for range 10 {
		pg, err := p.Alloc(gfp.Kernel)
		require.NoError(t, err)
		require.Equal(t, 1, pg.Order())
		require.Len(t, pg.Bytes(), 2*gfp.PageSize)
		held = append(held, pg)
	}
	require.Equal(t, 4, p.Stats().Reserve, "the allocator succeeded: the reserve is untouched")
	failPages(z)
	for range 4 {
		pg, err := p.Alloc(gfp.NoIO)
		require.NoError(t, err)
		held = append(held, pg)
	}
	require.Equal(t, int64(4), p.Stats().FromReserve)
	_, err = p.Alloc(gfp.Atomic)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	for _, pg := range held {
		p.Free(pg)
	}
	require.Equal(t, 4, p.Stats().Reserve)
	require.NoError(t, p.Close())
	z.InjectPageAllocFaults(nil)
}

// Page pools check frees by frame number even without debug mode.
func TestPagePoolCatchesForeignAndDoubleFrees(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 4<<20)
	other := newZone(t, 1<<20, gfp.WithName("Other"))
	p, err := mempool.NewPagePool(2, z, 0, mempool.WithDebug(false), mempool.WithName("pages"))
	require.NoError(t, err)

	foreign, err := other.AllocPages(0, gfp.Kernel)
	require.NoError(t, err)
	p.Free(foreign)
	require.Equal(t, []krules.Kind{krules.MempoolMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "mempool_free(pages): page is not from zone Normal\n")
	other.FreePages(foreign, 0)

	big, err := z.AllocPages(1, gfp.Kernel)
	require.NoError(t, err)
	p.Free(big)
	require.Contains(t, rec.Last().Text, "is an order-1 block in an order-0 pool")
	z.FreePages(big, 1)

	a, ok := p.AllocPreallocated()
	require.True(t, ok)
	p.Free(a) // back into the reserve
	p.Free(a) // again: it is in the reserve
	require.Contains(t, rec.Last().Text, "is already in the reserve (freed twice)")

	b, err := p.Alloc(gfp.Kernel) // from the zone
	require.NoError(t, err)
	p.Free(b) // reserve full: back to the zone
	p.Free(b)
	require.Contains(t, rec.Last().Text, "is not allocated (freed twice?)")
	require.Equal(t, 4, rec.Len())
	require.Equal(t, 2, p.Stats().Reserve)
	require.NoError(t, p.Close())
}

func TestKmallocPool(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 4<<20)
	p, err := mempool.NewKmallocPool(2, z, 200, mempool.WithName("kmalloc-200"))
	require.NoError(t, err)
	b, err := p.Alloc(gfp.Kernel)
	require.NoError(t, err)
	require.Len(t, b, 200)
	p.Free(b)
	p.Free(make([]byte, 200))
	require.Equal(t, []krules.Kind{krules.MempoolMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "buffer is not from zone Normal")
	c, err := z.Alloc(100, gfp.Kernel)
	require.NoError(t, err)
	p.Free(c)
	require.Contains(t, rec.Last().Text, "buffer of 100 bytes in a pool of 200-byte buffers")
	z.Free(c)
	d, err := z.Alloc(300, gfp.Kernel)
	require.NoError(t, err)
	p.Free(d)
	require.Contains(t, rec.Last().Text, "buffer of 300 bytes in a pool of 200-byte buffers", "larger is foreign too")
	require.Len(t, rec.Kinds(), 3)
	z.Free(d)
	require.NoError(t, p.Close())

	_, err = mempool.NewKmallocPool(1, z, 0)
	require.Error(t, err, "mempool_kmalloc of 0 bytes would hand out ZERO_SIZE_PTR")
}

type request struct {
	Sector uint64
	Len    uint32
	Flags  [4]uint8
}

func TestSlabPool(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 4<<20)
	p, err := mempool.NewSlabPool[request](3, z, mempool.WithName("bio"))
	require.NoError(t, err)
	var held []*request
	for i := range 20 {
		r, err := p.Alloc(gfp.NoIO)
		require.NoError(t, err)
		*r = request{Sector: uint64(i), Len: 512}
		held = append(held, r)
	}
	for i, r := range held {
		require.Equal(t, uint64(i), r.Sector, "objects do not overlap")
		p.Free(r)
	}
	require.NoError(t, p.Close())

	_, err = mempool.NewSlabPool[struct{ p *int }](1, z)
	require.ErrorContains(t, err, "hold pointers")
	_, err = mempool.NewSlabPool[[]byte](1, z)
	require.Error(t, err)
	q, err := mempool.NewSlabPool[struct {
		none [0]*int // no pointer to keep alive
		n    int64
	}](1, z)
	require.NoError(t, err)
	require.NoError(t, q.Close())

	// An object of no size still takes a byte of its own, as a kmem_cache
	// rounds its size up: each element is distinct.
	e, err := mempool.NewSlabPool[struct{}](2, z)
	require.NoError(t, err)
	a, ok := e.AllocPreallocated()
	require.True(t, ok)
	b, ok := e.AllocPreallocated()
	require.True(t, ok)
	require.NotEqual(t, uintptr(unsafe.Pointer(a)), uintptr(unsafe.Pointer(b)))
	e.Free(a)
	e.Free(b)
	require.NoError(t, e.Close())
}

// Debug mode poisons reserve elements; a write after free is caught when
// the element comes out of the reserve again.
func TestPoisonMismatch(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 4<<20)
	p, err := mempool.NewKmallocPool(1, z, 64, mempool.WithDebug(true), mempool.WithName("kmalloc-64"))
	require.NoError(t, err)
	a, ok := p.AllocPreallocated()
	require.True(t, ok)
	require.Equal(t, byte(0x5a), a[0], "POISON_INUSE when taken out")
	p.Free(a)
	require.Equal(t, byte(0x6b), a[0], "POISON_FREE in the reserve")
	require.Equal(t, byte(0xa5), a[63], "POISON_END")
	a[10] = 0xee // use after free
	b, ok := p.AllocPreallocated()
	require.True(t, ok)
	require.Equal(t, []krules.Kind{krules.MempoolPoison}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "BUG: mempool element poison mismatch", r.Headline)
	require.Regexp(t, `^BUG: mempool element poison mismatch\nMempool 0x[0-9a-f]+ size 64 \(kmalloc-64\)\n nr=0 @ 0x[0-9a-f]+: \.\.\. 0x6b 6b 6b 6b 6b 6b 6b 6b ee 6b 6b 6b 6b 6b 6b 6b \.\.\.\n`, r.Text)
	p.Free(b)
	require.NoError(t, p.Close())
}

// poison_error shows the 8 bytes either side of the first bad one, with
// "... " before them unless they start the element and "..." after unless
// they end it; a good element leaves the reserve all POISON_INUSE.
func TestPoisonReportWindow(t *testing.T) {
	rec := krulestest.Record(t)
	z := newZone(t, 4<<20)
	p, err := mempool.NewKmallocPool(1, z, 64, mempool.WithDebug(true))
	require.NoError(t, err)
	a, ok := p.AllocPreallocated()
	require.True(t, ok)
	require.Equal(t, bytes.Repeat([]byte{0x5a}, 64), a, "POISON_INUSE, to the last byte")
	eight := strings.Repeat("6b ", 8)
	for _, c := range []struct {
		at   int
		dump string
	}{
		{9, "... 0x" + eight + "ee " + strings.Repeat("6b ", 7) + "...\n"},
		{55, "... 0x" + eight + "ee " + strings.Repeat("6b ", 7) + "...\n"}, // the last byte is left out
		{56, "... 0x" + eight + "ee " + strings.Repeat("6b ", 6) + "a5 \n"},
	} {
		rec.Clear()
		p.Free(a)
		a[c.at] = 0xee
		a, ok = p.AllocPreallocated()
		require.True(t, ok)
		require.Equal(t, []krules.Kind{krules.MempoolPoison}, rec.Kinds())
		require.Contains(t, rec.Last().Text, ": "+c.dump, "mismatch at byte %d", c.at)
	}
	p.Free(a)
	require.NoError(t, p.Close())
}

// poisonedReserveOfThree makes a debug kmalloc pool of three 64-byte
// elements and cycles its reserve once, so that each element was poisoned
// as it came back: the reserve holds x[0], x[1], x[2], newest last.
func poisonedReserveOfThree(t *testing.T) (*mempool.Pool[[]byte], [3][]byte) {
	p, err := mempool.NewKmallocPool(3, newZone(t, 4<<20), 64, mempool.WithDebug(true))
	require.NoError(t, err)
	var x [3][]byte
	for i := range x {
		b, ok := p.AllocPreallocated()
		require.True(t, ok)
		x[i] = b
	}
	for _, b := range x {
		p.Free(b)
	}
	return p, x
}

// mempool_resize takes surplus reserve elements out through remove_element,
// which checks their poison: a bad first byte is reported, with the count
// left in the reserve.
func TestResizeChecksThePoisonOfTheSurplus(t *testing.T) {
	rec := krulestest.Record(t)
	p, x := poisonedReserveOfThree(t)
	x[2][0] = 0xee
	require.NoError(t, p.Resize(2))
	require.Equal(t, []krules.Kind{krules.MempoolPoison}, rec.Kinds())
	require.Regexp(t, `\n nr=2 @ 0x[0-9a-f]+: 0xee 6b `, rec.Last().Text)
	require.NoError(t, p.Close())
}

// mempool_exit takes the reserve out one element at a time, so a mismatch
// found there names the count left below the element (poison_error's nr).
func TestPoisonMismatchAtCloseNamesTheReserveLeft(t *testing.T) {
	rec := krulestest.Record(t)
	p, x := poisonedReserveOfThree(t)
	x[1][3] = 0xee
	x[0][0] = 0xee // the first byte is checked too
	require.NoError(t, p.Close())
	require.Equal(t, []krules.Kind{krules.MempoolPoison, krules.MempoolPoison}, rec.Kinds())
	require.Regexp(t, `\n nr=1 @ 0x[0-9a-f]+: 0x6b 6b 6b ee 6b 6b 6b 6b 6b 6b 6b \.\.\.\n`, rec.Reports()[0].Text)
	require.Regexp(t, `\n nr=0 @ 0x[0-9a-f]+: 0xee 6b 6b 6b 6b 6b 6b 6b \.\.\.\n`, rec.Reports()[1].Text)
}

// Debug mode tracks elements: freeing one twice, or one the pool never
// handed out, is reported for any pool.
func TestDebugTracksElements(t *testing.T) {
	rec := krulestest.Record(t)
	s := &source{}
	p, err := mempool.New(1, s.alloc, s.free, mempool.WithDebug(true), mempool.WithName("ints"))
	require.NoError(t, err)
	x, err := p.Alloc(gfp.Kernel)
	require.NoError(t, err)
	p.Free(x)
	p.Free(x)
	require.Equal(t, []krules.Kind{krules.MempoolMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "mempool_free(ints): element not handed out by this pool, or already freed")
	p.Free(new(int))
	require.Equal(t, 2, rec.Len())
	require.NoError(t, p.Close(), "the bad frees changed nothing")
}

// A goroutine that holds an element and waits for another from the same
// pool while all are out, and no free comes: the deadlock is reported once
// the wait has gone the kernel's 5 s (DefaultTimeout) without a wake-up,
// however short the pool's retry timeout.
func TestHeldElementWhileWaitingIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	s := &source{}
	p, err := mempool.New(1, s.alloc, s.free, mempool.WithTimeout(20*time.Millisecond), mempool.WithName("bio"), mempool.WithDebug(true))
	require.NoError(t, err)
	s.fail.Store(true)
	first := make(chan *int)
	second := make(chan *int)
	go func() {
		krules.SetName("kworker/u4:2")
		defer krules.SetName("")
		x, err := p.Alloc(gfp.NoIO)
		if err != nil {
			panic(err)
		}
		first <- x
		y, err := p.Alloc(gfp.NoIO) // waits while holding x
		if err != nil {
			panic(err)
		}
		second <- y
	}()
	x := <-first
	start := time.Now()
	require.Eventually(t, func() bool { return rec.Len() > 0 }, 15*time.Second, time.Millisecond)
	require.GreaterOrEqual(t, time.Since(start), mempool.DefaultTimeout-100*time.Millisecond, "not before 5 s without a free")
	r := rec.Last()
	require.Equal(t, krules.MempoolDeadlock, r.Kind)
	require.Equal(t, "WARNING: possible mempool deadlock detected", r.Headline)
	require.Regexp(t, `kworker/u4:2/\d+ is waiting for an element of mempool bio \(min_nr 1, none in reserve\)\nwhile holding 1 of its elements:\n #0: allocated at: mempool_test.TestHeldElementWhileWaitingIsReported.func1\+0x[0-9a-f]+ mempool/builtin_test.go:\d+\n`, r.Text)
	time.Sleep(60 * time.Millisecond)
	require.Equal(t, 1, rec.Len(), "reported once per wait, not at every timeout")
	p.Free(x) // break the deadlock from outside
	p.Free(<-second)
	require.NoError(t, p.Close())
	require.GreaterOrEqual(t, p.Stats().Timeouts, int64(1))
}

// Waiting without holding anything is just waiting.
func TestWaitWithoutHoldingIsNotADeadlock(t *testing.T) {
	krulestest.Check(t)
	s := &source{}
	p, err := mempool.New(1, s.alloc, s.free, mempool.WithTimeout(5*time.Millisecond))
	require.NoError(t, err)
	s.fail.Store(true)
	x, err := p.Alloc(gfp.Kernel)
	require.NoError(t, err)
	got := make(chan *int)
	go func() {
		y, err := p.Alloc(gfp.Kernel)
		if err != nil {
			panic(err)
		}
		got <- y
	}()
	require.Eventually(t, func() bool { return p.Stats().Timeouts > 1 }, 5*time.Second, time.Millisecond)
	p.Free(x)
	p.Free(<-got)
	require.NoError(t, p.Close())
}

// The common hand-off: a submitter allocates an element and hands it to a
// completion goroutine, which frees it later, after the pool's retry
// timeout, while the submitter already waits for the next one. The
// element is in flight, not held: the completion's free wakes the
// submitter, and nothing is reported.
func TestHandOffIsNotADeadlock(t *testing.T) {
	krulestest.Check(t)
	s := &source{}
	p, err := mempool.New(1, s.alloc, s.free, mempool.WithTimeout(2*time.Millisecond), mempool.WithDebug(true))
	require.NoError(t, err)
	s.fail.Store(true)
	inflight := make(chan *int)
	done := make(chan struct{})
	go func() { // the completion
		defer close(done)
		for x := range inflight {
			time.Sleep(30 * time.Millisecond) // the I/O, longer than the timeout
			p.Free(x)
		}
	}()
	for range 4 { // the submitter
		x, err := p.Alloc(gfp.NoIO)
		require.NoError(t, err)
		inflight <- x
	}
	close(inflight)
	<-done
	require.Positive(t, p.Stats().Timeouts, "the submitter did wait out timeouts")
	require.NoError(t, p.Close())
}

// The deadlock report needs a whole DefaultTimeout (mempool_alloc's
// io_schedule_timeout(5*HZ)) without a single wake-up, counted from the
// last one: a waiter woken by a free that another waiter wins starts
// again from zero, and reports as soon as 5 s have passed, not a retry
// timeout later. Two goroutines each hold an element and wait for another
// (retrying every 2.5 s). For 5 s nothing is reported, since the test,
// which is not waiting, holds an element too and may free it. Then that
// free wakes both and one wins it; the first report comes 5 s after it.
func TestDeadlockReportCountsFromTheLastWakeUp(t *testing.T) {
	rec := krulestest.Record(t)
	s := &source{}
	p, err := mempool.New(3, s.alloc, s.free, mempool.WithTimeout(mempool.DefaultTimeout/2), mempool.WithDebug(true))
	require.NoError(t, err)
	s.fail.Store(true)
	mine, err := p.Alloc(gfp.NoIO) // while the test holds it, nothing is stuck
	require.NoError(t, err)
	got := make(chan *int, 6)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 3 { // the first from the reserve, then waiting while holding
				x, err := p.Alloc(gfp.NoIO)
				if err != nil {
					panic(err)
				}
				got <- x
				if i == 0 {
					<-start // both hold one before either waits
				}
			}
		}()
	}
	require.Eventually(t, func() bool { return len(got) == 2 }, 5*time.Second, time.Millisecond)
	close(start)
	require.Eventually(t, func() bool { return p.Stats().Timeouts >= 4 }, 15*time.Second, time.Millisecond)
	require.Zero(t, rec.Len(), "an element is held by a goroutine that is not waiting")
	p.Free(mine)
	freed := time.Now()
	require.Eventually(t, func() bool { return rec.Len() > 0 }, 20*time.Second, time.Millisecond)
	since := time.Since(freed)
	require.GreaterOrEqual(t, since, mempool.DefaultTimeout-100*time.Millisecond, "counted from the wake-up")
	require.Less(t, since, mempool.DefaultTimeout+2*time.Second, "not a retry timeout later")
	require.Equal(t, krules.MempoolDeadlock, rec.Last().Kind)
	// Break the deadlock from outside.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case x := <-got:
			p.Free(x)
			continue
		case <-done:
		}
		break
	}
	for len(got) > 0 {
		p.Free(<-got)
	}
	require.NoError(t, p.Close())
}
