package dmafence_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// drivers/dma-buf/st-dma-fence.c's cases: signal once, callbacks, wait and
// timeout, and a race between signalling and waiting.

func TestFenceSignalOnce(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	ctx := dmafence.ContextAlloc(1)
	f := dmafence.New(ctx, 1)
	require.Equal(t, ctx, f.Context())
	require.EqualValues(t, 1, f.Seqno())
	require.False(t, f.IsSignaled())
	require.True(t, f.Timestamp().IsZero())
	require.NoError(t, f.Signal())
	require.True(t, f.IsSignaled())
	require.NoError(t, f.Err())
	require.False(t, f.Timestamp().IsZero())
	require.Zero(t, rec.Len())

	// dma_fence_signal's second call returns -EINVAL; krules reports it too.
	stamp := f.Timestamp()
	require.ErrorIs(t, f.Signal(), dmafence.ErrAlreadySignaled)
	require.Equal(t, []krules.Kind{krules.FenceMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "dma_fence_signal: fence already signaled")
	require.True(t, f.IsSignaled(), "a second signal changes nothing")
	require.Equal(t, stamp, f.Timestamp(), "a second signal changes nothing")
	held, _ := lockclass.IsHeldType(dmafence.Map(), -1)
	require.False(t, held, "the section is closed")
}

// dma_fence_context_alloc(0) is a WARN_ON(!num); it returns the context
// the next allocation starts at.
func TestContextAllocOfNoneWarns(t *testing.T) {
	rec := krulestest.Record(t)
	next := dmafence.ContextAlloc(0)
	require.Equal(t, []krules.Kind{krules.FenceMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "dma_fence_context_alloc: WARN_ON(!num)")
	require.Equal(t, next, dmafence.ContextAlloc(1))
	require.Equal(t, 1, rec.Len())
}

func TestFenceSignalErr(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	boom := errors.New("gpu hang")
	f := dmafence.New(dmafence.ContextAlloc(1), 1)
	require.NoError(t, f.Err())
	require.NoError(t, f.SignalErr(boom))
	require.ErrorIs(t, f.Err(), boom)
	require.NoError(t, f.Wait(context.Background()), "a wait succeeds whatever the fence's error")
}

// SignalErr on a signalled fence is the second signal, reported once, and
// the error stays; dma_fence_set_error warns when the error is not
// negative (a nil error here).
func TestFenceSignalErrFollowsSetErrorsRules(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	boom, late := errors.New("gpu hang"), errors.New("late")
	f := dmafence.New(dmafence.ContextAlloc(1), 1)
	require.NoError(t, f.SignalErr(boom))
	require.Zero(t, rec.Len())

	require.ErrorIs(t, f.SignalErr(late), dmafence.ErrAlreadySignaled)
	require.Equal(t, []krules.Kind{krules.FenceMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "dma_fence_signal: fence already signaled")
	require.ErrorIs(t, f.Err(), boom, "the error the waiters saw stays")

	rec.Clear()
	g := dmafence.New(dmafence.ContextAlloc(1), 1)
	require.NoError(t, g.SignalErr(nil))
	require.Equal(t, []krules.Kind{krules.FenceMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "dma_fence_set_error: WARN_ON(error >= 0)")
	require.True(t, g.IsSignaled())
	require.NoError(t, g.Err())
}

func TestFenceCallbacks(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	f := dmafence.New(dmafence.ContextAlloc(1), 1)
	var order []int
	var atomic []bool
	for i := range 3 {
		require.NoError(t, f.AddCallback(func(g *dmafence.Fence) {
			require.Same(t, f, g)
			order = append(order, i)
			atomic = append(atomic, nonblock.InAtomic())
		}))
	}
	require.NoError(t, f.Signal())
	require.Equal(t, []int{0, 1, 2}, order)
	require.Equal(t, []bool{true, true, true}, atomic, "callbacks run in an atomic section")
	require.ErrorIs(t, f.AddCallback(func(*dmafence.Fence) { t.Error("ran") }), dmafence.ErrSignaled)
}

func TestFenceCallbackMustNotSleep(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	f := dmafence.New(dmafence.ContextAlloc(1), 1)
	require.NoError(t, f.AddCallback(func(*dmafence.Fence) { nonblock.MightSleep() }))
	require.NoError(t, f.Signal())
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
}

func TestFenceWait(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	f := dmafence.New(dmafence.ContextAlloc(1), 1)
	require.Zero(t, f.WaitTimeout(0))
	require.Zero(t, f.WaitTimeout(time.Millisecond))
	kctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	require.ErrorIs(t, f.Wait(kctx), context.DeadlineExceeded)

	go func() { time.Sleep(2 * time.Millisecond); _ = f.Signal() }()
	left := f.WaitTimeout(10 * time.Second)
	require.Positive(t, left)
	require.LessOrEqual(t, left, 10*time.Second)
	require.Equal(t, dmafence.Forever, f.WaitTimeout(dmafence.Forever))
	require.NoError(t, f.Wait(context.Background()))
	select {
	case <-f.Done():
	default:
		t.Fatal("Done not closed")
	}
}

func TestFenceSignalWaitRace(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	tl := dmafence.ContextAlloc(1)
	for i := range 200 {
		f := dmafence.New(tl, uint64(i))
		cbRan := make(chan struct{})
		go func() {
			if f.AddCallback(func(*dmafence.Fence) { close(cbRan) }) != nil {
				close(cbRan)
			}
		}()
		go func() { _ = f.Signal() }()
		require.NoError(t, f.Wait(context.Background()))
		<-cbRan
	}
}

func TestFenceOrdering(t *testing.T) {
	rec := krulestest.Record(t)
	a, b := dmafence.ContextAlloc(2), uint64(0)
	b = a + 1
	f1, f2, g := dmafence.New(a, 1), dmafence.New(a, 2), dmafence.New(b, 5)
	require.True(t, f2.IsLater(f1))
	require.False(t, f1.IsLater(f2))
	require.False(t, f1.IsLater(dmafence.New(a, 1)), "the same seqno is not later (dma_fence_is_later is strict)")
	require.Zero(t, rec.Len())
	require.False(t, g.IsLater(f1), "different timelines are not ordered")
	require.Equal(t, []krules.Kind{krules.FenceMisuse}, rec.Kinds(), "dma_fence_is_later's WARN_ON")
	require.Contains(t, rec.Last().Text, "WARN_ON(f1->context != f2->context)")
	require.Contains(t, rec.Last().Headline, "fence_test.go", "the headline names IsLater's caller")
}

// As v6.12's __dma_fence_is_later: a fence of default ops compares the
// lower 32 bits of the seqnos with wrap-around, one whose ops set
// use_64bit_seqno (New64) compares all 64, and the first fence's ops decide.
func TestFenceOrderingSeqnoWidth(t *testing.T) {
	tl := dmafence.ContextAlloc(1)
	for _, tc := range []struct {
		name    string
		f, o    uint64
		later   bool
		seqno64 bool
	}{
		{"past the wrap", 1, 0xffffffff, true, false},
		{"before the wrap", 0xffffffff, 1, false, false},
		{"1<<32 over 0, only the low bits count", 1 << 32, 0, false, false},
		{"half the space ahead", 1<<31 - 1, 0, true, false},
		{"half the space ahead is behind", 1 << 31, 0, false, false},
		{"64-bit: 1 is not later than 0xffffffff", 1, 0xffffffff, false, true},
		{"64-bit: 1<<32 over 0", 1 << 32, 0, true, true},
		{"64-bit: 1<<63 over 0", 1 << 63, 0, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mk := dmafence.New
			if tc.seqno64 {
				mk = dmafence.New64
			}
			require.Equal(t, tc.later, mk(tl, tc.f).IsLater(dmafence.New(tl, tc.o)))
			require.Equal(t, tc.later, mk(tl, tc.f).IsLater(dmafence.New64(tl, tc.o)), "only f's ops count")
		})
	}
}

// A fence signalled before anybody waits makes no wait channel: New is the
// only allocation of a signal and a wait (the bench figure "Fence
// Signal+Wait" counts on it), and a poll allocates nothing.
func TestFenceSignalWaitAllocatesOnlyTheFence(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	tl, bg := dmafence.ContextAlloc(1), context.Background()
	seq := uint64(0)
	allocs := testing.AllocsPerRun(100, func() {
		seq++
		f := dmafence.New(tl, seq)
		_ = f.Signal()
		_ = f.Wait(bg)
		_ = f.WaitTimeout(time.Second)
	})
	require.Equal(t, 1.0, allocs)
	f := dmafence.New(tl, 0)
	require.Zero(t, testing.AllocsPerRun(100, func() { f.WaitTimeout(0) }))
}

// Done's channel is made on demand: asked before the signal it is closed
// by it, asked after it is closed already.
func TestFenceDone(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	f := dmafence.New(dmafence.ContextAlloc(1), 1)
	done := f.Done()
	require.Equal(t, done, f.Done(), "one channel for every caller")
	select {
	case <-done:
		t.Fatal("closed before the signal")
	default:
	}
	before := time.Now()
	require.NoError(t, f.Signal())
	<-done
	<-f.Done()
	g := dmafence.New(dmafence.ContextAlloc(1), 1)
	require.NoError(t, g.Signal())
	<-g.Done()
	ts := f.Timestamp()
	require.False(t, ts.Before(before), "stamped at the signal")
	require.False(t, ts.After(time.Now()))
}

// dma_fence_wait_timeout returns the time left, never 0 for a signalled
// fence: a poll (timeout 0) of a signalled fence returns 1, and a wait
// without limit (MAX_SCHEDULE_TIMEOUT) returns MAX_SCHEDULE_TIMEOUT itself,
// as schedule_timeout does.
func TestFenceWaitTimeoutReturnsTheTimeLeft(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	f := dmafence.New(dmafence.ContextAlloc(1), 1)
	require.NoError(t, f.Signal())
	require.Equal(t, time.Duration(1), f.WaitTimeout(0), "a poll of a signalled fence")
	g := dmafence.New(dmafence.ContextAlloc(1), 1)
	go func() { time.Sleep(time.Millisecond); _ = g.Signal() }()
	require.Equal(t, dmafence.Forever, g.WaitTimeout(dmafence.Forever))
}

// dma_fence_wait_timeout checks its argument first: WARN_ON(timeout < 0)
// returns -EINVAL, before might_sleep, whether or not the fence is
// signalled, and without waiting. dma_resv_wait_timeout hands its timeout
// to the first fence it waits for, and returns what that returns.
func TestFenceWaitTimeoutRejectsANegativeTimeout(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	done, busy := dmafence.New(dmafence.ContextAlloc(1), 1), dmafence.New(dmafence.ContextAlloc(1), 1)
	require.NoError(t, done.Signal())
	nonblock.Start()
	require.Equal(t, dmafence.InvalidTimeout, busy.WaitTimeout(-1))
	nonblock.End()
	require.Equal(t, []krules.Kind{krules.FenceMisuse}, rec.Kinds(), "the WARN_ON, not might_sleep")
	require.Contains(t, rec.Last().Text, "WARN_ON(timeout < 0)")
	require.Equal(t, dmafence.InvalidTimeout, done.WaitTimeout(-time.Second))
	require.Negative(t, dmafence.InvalidTimeout)
	require.Equal(t, 2, rec.Len())

	r := dmafence.NewResv()
	require.NoError(t, r.Lock(nil))
	require.NoError(t, r.ReserveFences(2))
	r.AddFence(done, dmafence.UsageWrite)
	r.AddFence(busy, dmafence.UsageBookkeep)
	r.Unlock()
	require.Equal(t, -time.Second, r.WaitTimeout(dmafence.UsageRead, -time.Second), "no fence to wait for: the timeout comes back")
	require.Equal(t, 2, rec.Len())
	require.Equal(t, dmafence.InvalidTimeout, r.WaitTimeout(dmafence.UsageBookkeep, -time.Second))
	require.Equal(t, 3, rec.Len())
	require.False(t, busy.IsSignaled())

	// The first result that is not positive ends the walk: one WARN_ON,
	// not one a fence.
	require.NoError(t, r.Lock(nil))
	require.NoError(t, r.ReserveFences(1))
	r.AddFence(dmafence.New(dmafence.ContextAlloc(1), 1), dmafence.UsageBookkeep)
	r.Unlock()
	require.Equal(t, dmafence.InvalidTimeout, r.WaitTimeout(dmafence.UsageBookkeep, -time.Second))
	require.Equal(t, 4, rec.Len())
}

// The smallest positive timeout is a wait, if a short one: an unsignalled
// fence times out (0), a signalled one returns the timeout, 1, as
// dma_fence_default_wait does; dma_resv_wait_timeout gives up at its first
// unsignalled fence the same way.
func TestFenceWaitOfOneNanosecond(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	busy, done := dmafence.New(dmafence.ContextAlloc(1), 1), dmafence.New(dmafence.ContextAlloc(1), 1)
	require.NoError(t, done.Signal())
	require.Zero(t, busy.WaitTimeout(time.Nanosecond))
	require.Equal(t, time.Nanosecond, done.WaitTimeout(time.Nanosecond))
	r := dmafence.NewResv()
	require.NoError(t, r.Lock(nil))
	require.NoError(t, r.ReserveFences(2))
	r.AddFence(done, dmafence.UsageWrite)
	r.AddFence(busy, dmafence.UsageBookkeep)
	r.Unlock()
	require.Equal(t, time.Nanosecond, r.WaitTimeout(dmafence.UsageRead, time.Nanosecond))
	require.Zero(t, r.WaitTimeout(dmafence.UsageBookkeep, time.Nanosecond))
	require.NoError(t, busy.Signal())
}

// dma_fence_wait is a fence wait like dma_fence_wait_timeout: might_sleep
// runs before the fence is looked at, so waiting for a fence already
// signalled is reported in a non-block section.
func TestFenceWaitInANonBlockSectionIsReportedEvenWhenSignalled(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	f := dmafence.New(dmafence.ContextAlloc(1), 1)
	require.NoError(t, f.Signal())
	bg := context.Background()

	nonblock.Start()
	_, _, line, _ := runtime.Caller(0)
	require.NoError(t, f.Wait(bg))
	nonblock.End()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "non_block: 1")
	// The site is the caller's, as for every krules package's reports:
	// dmafence's own frames are library frames.
	require.Equal(t, fmt.Sprintf("BUG: sleeping function called from invalid context at dmafence/fence_test.go:%d", line+1), rec.Last().Headline)

	rec.Clear()
	nonblock.Start()
	f.WaitTimeout(time.Second)
	nonblock.End()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds(), "WaitTimeout in a non-block section")
}
