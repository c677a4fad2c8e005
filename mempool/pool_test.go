package mempool_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mempool"
)

func TestNewPreallocates(t *testing.T) {
	krulestest.Check(t)
	s := &source{}
	p, err := mempool.New(3, s.alloc, s.free)
	require.NoError(t, err)
	require.Equal(t, []gfp.Flags{gfp.Kernel, gfp.Kernel, gfp.Kernel}, s.calls())
	require.Equal(t, 3, p.Stats().Reserve)
	require.True(t, p.Saturated())
	require.NoError(t, p.Close())
	require.Zero(t, s.live.Load(), "Close gives the reserve back")

	s = &source{}
	p, err = mempool.New(0, s.alloc, s.free, mempool.WithGFP(gfp.NoIO))
	require.NoError(t, err)
	require.Equal(t, []gfp.Flags{gfp.NoIO}, s.calls(), "max(1, min_nr) elements with the given flags")
	require.Equal(t, 1, p.Stats().Reserve)
	require.NoError(t, p.Close())

	// A failure releases what was taken.
	s = &source{}
	calls := 0
	_, err = mempool.New(4, func(f gfp.Flags) (*int, error) {
		if calls++; calls == 3 {
			return nil, errFail
		}
		return s.alloc(f)
	}, s.free)
	require.ErrorIs(t, err, errFail)
	require.Zero(t, s.live.Load())

	_, err = mempool.New(-1, s.alloc, s.free)
	require.Error(t, err)
	_, err = mempool.New(1, nil, s.free)
	require.ErrorContains(t, err, "alloc and free are required")
	_, err = mempool.New(1, s.alloc, nil)
	require.ErrorContains(t, err, "alloc and free are required")
}

// Each path of Alloc and Free is counted where it is taken: the allocator's
// failures (first passes included), the reserve's hand-outs, the failures
// of callers that may not wait, the refills. A nil free changes nothing.
func TestStatsCountEachPath(t *testing.T) {
	for _, debug := range []bool{false, true} {
		t.Run(fmt.Sprintf("debug=%v", debug), func(t *testing.T) {
			krulestest.Check(t)
			s := &source{}
			p, err := mempool.New(2, s.alloc, s.free, mempool.WithName("counted"), mempool.WithDebug(debug))
			require.NoError(t, err)
			require.Equal(t, "counted", p.Name())
			s.fail.Store(true)
			x, err := p.Alloc(gfp.Kernel) // a first pass, then the reserve
			require.NoError(t, err)
			y, err := p.Alloc(gfp.Atomic) // one pass, then the reserve
			require.NoError(t, err)
			_, err = p.Alloc(gfp.Atomic) // one pass, an empty reserve: no wait
			require.ErrorIs(t, err, gfp.ErrNoMemory)
			p.Free(nil)
			require.Equal(t, mempool.Stats{Name: "counted", MinNr: 2, Reserve: 0, Outstanding: 2,
				FromReserve: 2, AllocatorFailures: 3, Failed: 1}, p.Stats(), "a nil free is ignored")
			p.Free(x)
			p.Free(y)
			st := p.Stats()
			require.Equal(t, mempool.Stats{Name: "counted", MinNr: 2, Reserve: 2,
				FromReserve: 2, AllocatorFailures: 3, Failed: 1, Refills: 2}, st)
			require.Equal(t, "counted: min_nr 2 curr_nr 2 outstanding 0 from_reserve 2 allocator_failures 3 waits 0 timeouts 0 failed 1 refills 2", st.String())
			require.NoError(t, p.Close())
		})
	}
}

// mempool_alloc's first pass (mm/mempool.c): NOMEMALLOC|NORETRY|NOWARN
// added, DIRECT_RECLAIM and IO removed; then the reserve; then, first pass
// only, the caller's flags (with the three added); then fail or wait.
func TestFirstPassFlags(t *testing.T) {
	krulestest.Check(t)
	s := &source{}
	p, err := mempool.New(1, s.alloc, s.free, mempool.WithTimeout(time.Hour))
	require.NoError(t, err)
	defer p.Close()
	s.reset()
	s.fail.Store(true)
	added := gfp.NoMemalloc | gfp.NoRetry | gfp.NoWarn

	x, err := p.Alloc(gfp.Kernel)
	require.NoError(t, err)
	require.Equal(t, []gfp.Flags{gfp.KswapdReclaim | gfp.FS | added}, s.calls(), "one try without reclaim or I/O, then the reserve")

	s.reset()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = p.AllocContext(ctx, gfp.Kernel)
	require.ErrorIs(t, err, context.DeadlineExceeded, "GFP_KERNEL waits")
	require.Equal(t, []gfp.Flags{gfp.KswapdReclaim | gfp.FS | added, gfp.Kernel | added}, s.calls(),
		"the reserve is empty: the caller's flags at once, then the wait")

	s.reset()
	_, err = p.Alloc(gfp.Atomic)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, []gfp.Flags{gfp.Atomic | added}, s.calls(), "nothing to strip from GFP_ATOMIC: one try, no second pass")

	s.reset()
	_, err = p.Alloc(gfp.NoWait)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	_, err = p.Alloc(gfp.Kernel &^ gfp.DirectReclaim)
	require.ErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, []gfp.Flags{gfp.NoWait | added, (gfp.Kernel&^gfp.DirectReclaim | added) &^ gfp.IO, gfp.Kernel&^gfp.DirectReclaim | added}, s.calls())
	st := p.Stats()
	require.Equal(t, int64(3), st.Failed)
	require.Equal(t, int64(1), st.FromReserve)
	require.Equal(t, int64(1), st.Waits)
	p.Free(x)
}

// The underlying allocator never succeeds; N goroutines × M allocations
// with blocking flags all complete on the reserve alone, with no timeout
// needed (frees wake the waiters). With GFP_ATOMIC the failures are
// immediate and counted.
func TestForwardProgressWithAFailingAllocator(t *testing.T) {
	krulestest.Check(t)
	s := &source{}
	p, err := mempool.New(4, s.alloc, s.free, mempool.WithTimeout(time.Hour))
	require.NoError(t, err)
	s.fail.Store(true)
	const goroutines, rounds = 16, 300
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				x, err := p.Alloc(gfp.NoIO)
				if err != nil {
					panic(err)
				}
				*x++ // the element is ours
				p.Free(x)
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("no forward progress")
	}
	st := p.Stats()
	require.Equal(t, int64(goroutines*rounds), st.FromReserve)
	require.Zero(t, st.Timeouts, "every waiter was woken by a free")
	require.Equal(t, 4, st.Reserve)

	// Atomic: no waiting; with the reserve empty the failures are
	// immediate and counted.
	var held []*int
	for range 4 {
		x, err := p.Alloc(gfp.Atomic)
		require.NoError(t, err)
		held = append(held, x)
	}
	start := time.Now()
	for range 100 {
		_, err := p.Alloc(gfp.Atomic)
		require.ErrorIs(t, err, gfp.ErrNoMemory)
	}
	require.Less(t, time.Since(start), time.Second)
	require.Equal(t, int64(100), p.Stats().Failed)
	for _, x := range held {
		p.Free(x)
	}
	require.NoError(t, p.Close())
	require.Zero(t, s.live.Load())
}

// A free refills the reserve before it wakes the waiter, and the waiter
// sees what the freeing goroutine wrote (the race detector checks the
// happens-before edge through the pool).
func TestFreeBeforeWake(t *testing.T) {
	krulestest.Check(t)
	s := &source{}
	p, err := mempool.New(1, s.alloc, s.free, mempool.WithTimeout(time.Hour))
	require.NoError(t, err)
	defer p.Close()
	s.fail.Store(true)
	for round := range 50 {
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
		require.Eventually(t, func() bool { return p.Stats().Waits > int64(round) }, 5*time.Second, 100*time.Microsecond)
		*x = 1000 + round // written before the free
		p.Free(x)
		y := <-got
		require.Same(t, x, y, "the waiter got the freed element")
		require.Equal(t, 1000+round, *y)
		p.Free(y)
	}
	require.Zero(t, p.Stats().Timeouts)
}

// Many goroutines contend for a small reserve with blocking flags and a
// pool timeout of an hour: a lost wake-up would hang the test.
func TestNoLostWakeUps(t *testing.T) {
	krulestest.Check(t)
	s := &source{}
	p, err := mempool.New(2, s.alloc, s.free, mempool.WithTimeout(time.Hour), mempool.WithDebug(false))
	require.NoError(t, err)
	s.fail.Store(true)
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				x, err := p.Alloc(gfp.Kernel)
				if err != nil {
					panic(err)
				}
				if (g+i)%7 == 0 {
					time.Sleep(time.Microsecond)
				}
				p.Free(x)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("a wake-up was lost")
	}
	require.Zero(t, p.Stats().Timeouts)
	require.NoError(t, p.Close())
}

// The same with a 1 ms safety net, so that timeouts race with frees.
func TestShortTimeoutStress(t *testing.T) {
	krulestest.Check(t)
	s := &source{}
	p, err := mempool.New(1, s.alloc, s.free, mempool.WithTimeout(time.Millisecond), mempool.WithDebug(false))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				s.fail.Store((g+i)%3 != 0) // the allocator flickers
				x, err := p.Alloc(gfp.Kernel)
				if err != nil {
					panic(err)
				}
				time.Sleep(time.Duration(i%3) * 100 * time.Microsecond)
				p.Free(x)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, p.Close())
	require.Zero(t, s.live.Load(), "nothing leaked between reserve and allocator")
}

// Every path at once, contending for the pool's lock: hand-outs from the
// allocator and from the reserve, frees into the reserve and back to the
// allocator. out stays exact (never above the goroutines' elements, zero
// at the end), the reserve ends full, and nothing leaks.
func TestCountsStayExactUnderContention(t *testing.T) {
	krulestest.Check(t)
	s := &source{}
	const goroutines, minNr = 8, 3
	p, err := mempool.New(minNr, s.alloc, s.free, mempool.WithTimeout(time.Millisecond), mempool.WithDebug(false))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20000 {
				s.fail.Store((g+i)%3 != 0) // the allocator flickers
				x, err := p.Alloc(gfp.Kernel)
				if err != nil {
					panic(err)
				}
				p.Free(x)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			st := p.Stats()
			require.GreaterOrEqual(t, st.Outstanding, int64(0))
			require.LessOrEqual(t, st.Outstanding, int64(goroutines))
			require.LessOrEqual(t, st.Reserve, minNr)
			time.Sleep(50 * time.Microsecond)
		}
	}
	st := p.Stats()
	require.Zero(t, st.Outstanding)
	require.Equal(t, minNr, st.Reserve, "every element taken from the reserve refilled it")
	require.True(t, p.Saturated())
	require.Equal(t, int64(minNr), s.live.Load(), "the reserve's elements, and no other")
	require.NoError(t, p.Close())
	require.Zero(t, s.live.Load())
}

// Saturated reads the reserve's size without the lock; it follows every
// change to the reserve.
func TestSaturatedFollowsTheReserve(t *testing.T) {
	krulestest.Check(t)
	s := &source{}
	p, err := mempool.New(2, s.alloc, s.free, mempool.WithDebug(false))
	require.NoError(t, err)
	require.True(t, p.Saturated())
	s.fail.Store(true)
	x, err := p.Alloc(gfp.Kernel)
	require.NoError(t, err)
	require.False(t, p.Saturated(), "taken from the reserve")
	p.Free(x)
	require.True(t, p.Saturated(), "refilled")
	s.fail.Store(false)
	require.NoError(t, p.Resize(4))
	require.True(t, p.Saturated(), "grown and filled")
	s.fail.Store(true)
	require.NoError(t, p.Resize(6))
	require.False(t, p.Saturated(), "grown, not filled")
	require.NoError(t, p.Resize(1))
	require.True(t, p.Saturated(), "shrunk")
	require.Equal(t, 1, p.Stats().Reserve)
	require.NoError(t, p.Close())
	require.False(t, p.Saturated(), "emptied")
	require.Zero(t, s.live.Load())
}

func TestResizeWhileAllocationsRun(t *testing.T) {
	krulestest.Check(t)
	s := &source{}
	p, err := mempool.New(2, s.alloc, s.free, mempool.WithTimeout(10*time.Millisecond))
	require.NoError(t, err)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s.fail.Store((g+i)%2 == 0)
				x, err := p.Alloc(gfp.Kernel)
				if err != nil {
					panic(err)
				}
				p.Free(x)
			}
		}()
	}
	for _, n := range []int{8, 1, 16, 3, 32, 2, 5, 1, 12} {
		s.fail.Store(false)
		require.NoError(t, p.Resize(n))
		require.Equal(t, n, p.MinNr())
		st := p.Stats()
		require.LessOrEqual(t, st.Reserve, max(n, 1))
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	s.fail.Store(false)
	require.NoError(t, p.Resize(6))
	require.Equal(t, 6, p.Stats().Reserve, "growing fills the reserve when the allocator succeeds")
	require.NoError(t, p.Resize(2))
	require.Equal(t, 2, p.Stats().Reserve, "shrinking frees the surplus")
	require.NoError(t, p.Close())
	require.Zero(t, s.live.Load())
}

func TestResizeGrowFailureIsNotAnError(t *testing.T) {
	krulestest.ResetDefault(t) // Resize(0)'s BUG_ON turns lock debugging off
	rec := krulestest.Record(t)
	s := &source{}
	p, err := mempool.New(1, s.alloc, s.free)
	require.NoError(t, err)
	s.fail.Store(true)
	require.NoError(t, p.Resize(5))
	require.Equal(t, 5, p.MinNr())
	require.Equal(t, 1, p.Stats().Reserve)
	s.fail.Store(false)
	x, err := p.Alloc(gfp.Kernel) // from the allocator
	require.NoError(t, err)
	p.Free(x) // refills instead of going back
	require.Equal(t, 2, p.Stats().Reserve)

	require.Error(t, p.Resize(0))
	require.Equal(t, []krules.Kind{krules.MempoolMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "BUG_ON(new_min_nr <= 0)")
	require.NoError(t, p.Close())
}

// mempool_resize allocates outside the lock; frees that refill the reserve
// meanwhile win: Resize gives its element back to the allocator ("Raced").
func TestResizeRacedByARefillFreesItsElement(t *testing.T) {
	krulestest.Check(t)
	s := &source{}
	var out []*int
	var p *mempool.Pool[*int]
	alloc := func(f gfp.Flags) (*int, error) {
		if p != nil && p.MinNr() == 4 && len(out) > 0 { // Resize's refill
			for _, x := range out {
				p.Free(x)
			}
			out = nil
		}
		return s.alloc(f)
	}
	p, err := mempool.New(3, alloc, s.free)
	require.NoError(t, err)
	x, err := p.Alloc(gfp.Kernel) // from the allocator
	require.NoError(t, err)
	out = append(out, x)
	for range 3 {
		y, ok := p.AllocPreallocated()
		require.True(t, ok)
		out = append(out, y)
	}
	require.NoError(t, p.Resize(4))
	require.Equal(t, mempool.Stats{Name: "mempool", MinNr: 4, Reserve: 4, FromReserve: 3, Refills: 4}, p.Stats())
	require.Equal(t, int64(4), s.live.Load(), "the raced element went back to the allocator")
	require.NoError(t, p.Close())
}

// An element taken from the reserve is the caller's alone: the reserve's
// slot does not keep it alive (Go's collector, unlike kmemleak, would
// otherwise never see it leak).
func TestReserveDoesNotKeepTakenElementsAlive(t *testing.T) {
	rec := krulestest.Record(t)
	p, err := mempool.New(1, func(gfp.Flags) (*[64]byte, error) { return new([64]byte), nil },
		func(*[64]byte) {}, mempool.WithDebug(false)) // debug mode tracks elements, by pointer
	require.NoError(t, err)
	x, ok := p.AllocPreallocated()
	require.True(t, ok)
	w := weak.Make(x)
	x = nil
	runtime.GC()
	require.Nil(t, w.Value())
	require.Error(t, p.Close(), "the element was never freed")
	require.Equal(t, []krules.Kind{krules.MempoolMisuse}, rec.Kinds())
}

func TestAllocPreallocated(t *testing.T) {
	krulestest.Check(t)
	s := &source{}
	p, err := mempool.New(2, s.alloc, s.free)
	require.NoError(t, err)
	s.reset()
	a, ok := p.AllocPreallocated()
	require.True(t, ok)
	b, ok := p.AllocPreallocated()
	require.True(t, ok)
	_, ok = p.AllocPreallocated()
	require.False(t, ok)
	require.Empty(t, s.calls(), "never calls the allocator")
	p.Free(a)
	p.Free(b)
	require.NoError(t, p.Close())
}

func TestZeroIsReportedOnce(t *testing.T) {
	rec := krulestest.Record(t)
	s := &source{}
	p, err := mempool.New(1, s.alloc, s.free, mempool.WithName("bio"))
	require.NoError(t, err)
	x, err := p.Alloc(gfp.Kernel | gfp.Zero)
	require.NoError(t, err)
	y, err := p.Alloc(gfp.Kernel | gfp.Zero)
	require.NoError(t, err)
	require.Equal(t, []krules.Kind{krules.MempoolMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "VM_WARN_ON_ONCE(gfp_mask & __GFP_ZERO): mempool bio cannot return zeroed elements")
	require.Regexp(t, `^WARNING: CPU: - PID: \d+ at mempool/pool_test.go:\d+ `, rec.Last().Headline)
	require.Contains(t, s.calls()[1:], (gfp.Kernel|gfp.Zero|gfp.NoMemalloc|gfp.NoRetry|gfp.NoWarn)&^(gfp.DirectReclaim|gfp.IO), "and still passed on")
	p.Free(x)
	p.Free(y)
	require.NoError(t, p.Close())
}

func TestCloseReportsOutstandingElements(t *testing.T) {
	rec := krulestest.Record(t)
	s := &source{}
	p, err := mempool.New(1, s.alloc, s.free, mempool.WithName("bio"))
	require.NoError(t, err)
	x, err := p.Alloc(gfp.Kernel)
	require.NoError(t, err)
	y, err := p.Alloc(gfp.Kernel)
	require.NoError(t, err)
	err = p.Close()
	require.ErrorContains(t, err, "2 elements outstanding")
	require.Equal(t, []krules.Kind{krules.MempoolMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "mempool_destroy(bio): 2 element(s) still outstanding\n")
	require.Regexp(t, `allocated by goroutine \d+ at: mempool_test.TestCloseReportsOutstandingElements\+0x[0-9a-f]+ mempool/pool_test.go:\d+`, rec.Last().Text)
	require.NoError(t, p.Close(), "idempotent, with elements still out")
	require.Len(t, rec.Kinds(), 1, "reported once")
	_, err = p.Alloc(gfp.Kernel)
	require.ErrorIs(t, err, mempool.ErrClosed)
	p.Free(x) // straight to the allocator
	p.Free(y)
	require.Zero(t, s.live.Load())
	require.NoError(t, p.Close(), "idempotent")
}

func TestCloseWakesWaiters(t *testing.T) {
	krulestest.Record(t)
	s := &source{}
	p, err := mempool.New(1, s.alloc, s.free, mempool.WithTimeout(time.Hour))
	require.NoError(t, err)
	s.fail.Store(true)
	x, err := p.Alloc(gfp.Kernel)
	require.NoError(t, err)
	errc := make(chan error)
	go func() { _, err := p.Alloc(gfp.Kernel); errc <- err }()
	require.Eventually(t, func() bool { return p.Stats().Waits == 1 }, 5*time.Second, time.Millisecond)
	_ = p.Close()
	require.ErrorIs(t, <-errc, mempool.ErrClosed)
	p.Free(x)
}

// min_nr 0 keeps one element, so a free still wakes a waiter.
func TestZeroMinimumKeepsOneElement(t *testing.T) {
	krulestest.Check(t)
	s := &source{}
	p, err := mempool.New(0, s.alloc, s.free, mempool.WithTimeout(time.Hour))
	require.NoError(t, err)
	s.fail.Store(true)
	x, err := p.Alloc(gfp.Kernel)
	require.NoError(t, err)
	require.Zero(t, p.Stats().Reserve)
	got := make(chan *int)
	go func() {
		y, err := p.Alloc(gfp.Kernel)
		if err != nil {
			panic(err)
		}
		got <- y
	}()
	require.Eventually(t, func() bool { return p.Stats().Waits == 1 }, 5*time.Second, time.Millisecond)
	p.Free(x)
	y := <-got
	require.Same(t, x, y)
	p.Free(y)
	require.NoError(t, p.Close())
	require.Zero(t, s.live.Load())
}

func TestSleepingAllocInANonBlockSectionIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	s := &source{}
	p, err := mempool.New(1, s.alloc, s.free)
	require.NoError(t, err)
	defer p.Close()
	nonblockStart()
	x, err := p.Alloc(gfp.Kernel)
	nonblockEnd()
	require.NoError(t, err)
	p.Free(x)
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds(), "MightAlloc")
}

// An Alloc whose allocator call is in flight when Close runs: Close's
// wake-up comes before the Alloc prepares to wait, so the Alloc must see
// the pool closed under the lock and return at once, not sleep its whole
// timeout (DefaultTimeout, 5 s).
func TestAllocInFlightAtCloseReturnsAtOnce(t *testing.T) {
	rec := krulestest.Record(t)
	var failing atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	alloc := func(f gfp.Flags) (*int, error) {
		if !failing.Load() {
			return new(int), nil
		}
		if f&gfp.DirectReclaim != 0 { // the second try, with the caller's flags
			close(entered)
			<-release
		}
		return nil, errFail
	}
	p, err := mempool.New(1, alloc, func(*int) {}, mempool.WithName("bio"))
	require.NoError(t, err)
	failing.Store(true)
	x, ok := p.AllocPreallocated() // the reserve's only element
	require.True(t, ok)

	errc := make(chan error)
	go func() { _, err := p.Alloc(gfp.Kernel); errc <- err }()
	<-entered
	require.ErrorContains(t, p.Close(), "1 elements outstanding")
	start := time.Now()
	close(release)
	require.ErrorIs(t, <-errc, mempool.ErrClosed)
	require.Less(t, time.Since(start), time.Second, "returned at once, without waiting its timeout")
	require.Zero(t, p.Stats().Waits)
	require.Equal(t, []krules.Kind{krules.MempoolMisuse}, rec.Kinds(), "the outstanding element")
	p.Free(x)
}

// Without debug mode the pool cannot tell its elements from others, but a
// Free with none outstanding is recognisable at no cost: it is reported
// and refused, so the counters stay true and the element reaches neither
// the reserve nor the allocator.
func TestFreeWithNothingOutstandingIsRefused(t *testing.T) {
	rec := krulestest.Record(t)
	s := &source{}
	p, err := mempool.New(2, s.alloc, s.free, mempool.WithDebug(false), mempool.WithName("bio"))
	require.NoError(t, err)
	x, err := p.Alloc(gfp.Kernel)
	require.NoError(t, err)
	p.Free(x)
	p.Free(x)        // double free
	p.Free(new(int)) // foreign
	require.Zero(t, p.Stats().Outstanding)
	require.Equal(t, 2, p.Stats().Reserve, "the reserve took neither")
	require.Equal(t, []krules.Kind{krules.MempoolMisuse, krules.MempoolMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "mempool_free(bio): no element is outstanding: a double or foreign free")
	y, err := p.Alloc(gfp.Kernel)
	require.NoError(t, err)
	z, err := p.Alloc(gfp.Kernel)
	require.NoError(t, err)
	require.NotSame(t, y, z, "no element is handed out twice")
	p.Free(y)
	p.Free(z)
	require.NoError(t, p.Close())
	require.Zero(t, s.live.Load())
}

// mempool_free ignores a NULL element. For an interface element type that
// is the nil interface only: an interface holding a nil pointer is an
// element like any other, and freeing it with none outstanding is refused.
func TestFreeIgnoresOnlyTheNilInterface(t *testing.T) {
	rec := krulestest.Record(t)
	p, err := mempool.New(1, func(gfp.Flags) (any, error) { return new(int), nil }, func(any) {},
		mempool.WithDebug(false), mempool.WithName("iface"))
	require.NoError(t, err)
	p.Free(nil)
	require.Zero(t, rec.Len(), "NULL is ignored")
	p.Free((*int)(nil))
	require.Equal(t, []krules.Kind{krules.MempoolMisuse}, rec.Kinds(), "a typed nil is an element")
	require.Contains(t, rec.Last().Text, "mempool_free(iface): no element is outstanding")
	require.Equal(t, 1, p.Stats().Reserve)
	require.NoError(t, p.Close())
}

// mempool_exit gives the reserve back by popping it (remove_element), so
// the allocator gets the elements newest first.
func TestCloseFreesTheReserveNewestFirst(t *testing.T) {
	krulestest.Check(t)
	var freed []int
	n := 0
	p, err := mempool.New(3, func(gfp.Flags) (*int, error) { n++; v := n; return &v, nil },
		func(x *int) { freed = append(freed, *x) })
	require.NoError(t, err)
	require.NoError(t, p.Close())
	require.Equal(t, []int{3, 2, 1}, freed)
}

// mempool_resize may sleep (might_sleep), even when it only shrinks the
// reserve and so would not: a Resize in a non-block section is reported.
func TestResizeInANonBlockSectionIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	s := &source{}
	p, err := mempool.New(2, s.alloc, s.free)
	require.NoError(t, err)
	defer p.Close()
	nonblockStart()
	require.NoError(t, p.Resize(1))
	nonblockEnd()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
}

// mempool_resize's BUG_ON(new_min_nr <= 0) is an oops: "kernel BUG at",
// tainted D after it, and add_taint's LOCKDEP_NOW_UNRELIABLE turns lock
// debugging off, said once.
func TestResizeToNothingIsAnOops(t *testing.T) {
	krulestest.ResetDefault(t)
	krules.Reset()
	t.Cleanup(krules.Reset)
	rec := krulestest.Record(t)
	log := krulestest.CaptureLog(t)
	s := &source{}
	p, err := mempool.New(1, s.alloc, s.free)
	require.NoError(t, err)
	require.Error(t, p.Resize(0))
	require.Equal(t, []krules.Kind{krules.MempoolMisuse}, rec.Kinds())
	require.Regexp(t, `^kernel BUG at .*pool_test\.go:\d+!$`, rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "BUG_ON(new_min_nr <= 0)")
	require.Contains(t, rec.Last().Text, "CPU: - UID: 0 PID: ", "the oops prints the taint from before")
	require.NotContains(t, rec.Last().Text, "[D]=DIE")
	require.True(t, krules.ReportStats().Tainted)
	require.False(t, lockclass.Default().Enabled(), "LOCKDEP_NOW_UNRELIABLE turned lock debugging off")
	require.Equal(t, "Disabling lock debugging due to kernel taint\n", log.String())
	require.Error(t, p.Resize(-1))
	require.Equal(t, "Disabling lock debugging due to kernel taint\n", log.String(), "said once, when it turned off")
	require.NoError(t, p.Close())
}
