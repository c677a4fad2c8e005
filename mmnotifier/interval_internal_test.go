package mmnotifier

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
)

func testMM(t *testing.T) *MM {
	t.Helper()
	krulestest.ResetDefault(t)
	z, err := gfp.NewZone(4<<20, gfp.WithoutKswapd())
	require.NoError(t, err)
	mm := NewMM(WithZone(z), WithoutReclaim())
	t.Cleanup(func() {
		if mm.Users() > 0 {
			mm.Exit()
		}
		Synchronize()
		require.NoError(t, z.Close())
	})
	return mm
}

// seqOps is a driver's interval callback: it sets the sequence under its
// lock and records what it saw; it can be made to refuse or to block.
type seqOps struct {
	mu             sync.Mutex
	curs           []uint64
	events         []Event
	refuse         bool          // return false
	refuseNonblock bool          // return false in non-blockable ranges
	entered        chan struct{} // closed on the first call, if set
	leave          chan struct{} // waited for on the first call, if set
}

func (o *seqOps) Invalidate(sub *IntervalNotifier, r *Range, cur uint64) bool {
	if o.entered != nil {
		close(o.entered)
		o.entered = nil
		<-o.leave
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.curs = append(o.curs, cur)
	o.events = append(o.events, r.Event)
	if o.refuse || o.refuseNonblock && !r.Blockable() {
		return false
	}
	sub.SetSeq(cur)
	return true
}

func (o *seqOps) calls() []uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.curs
	o.curs = nil
	return c
}

// state returns the subscriptions' sequence and active count.
func state(mm *MM) (seq uint64, active int) {
	s := mm.subs.Load()
	s.lock.Lock()
	defer s.lock.Unlock()
	return s.seq.Load(), s.active
}

func inTree(sub *IntervalNotifier) bool {
	sub.subs.lock.Lock()
	defer sub.subs.lock.Unlock()
	return sub.inTree
}

// begin starts a blockable invalidation of [start, end) on a goroutine of
// its own, as another thread of the process would, and returns the
// function that ends it.
func begin(mm *MM, start, end uint64) func() {
	started, stop, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		r := NewRange(mm, EventClear, start, end)
		mm.mmapLock.RLock()
		InvalidateRangeStart(&r)
		close(started)
		<-stop
		InvalidateRangeEnd(&r)
		mm.mmapLock.RUnlock()
	}()
	<-started
	return func() {
		close(stop)
		<-done
	}
}

// readBegin runs ReadBegin on a goroutine and returns its result channel.
func readBegin(sub *IntervalNotifier) chan uint64 {
	ch := make(chan uint64, 1)
	go func() { ch <- sub.ReadBegin() }()
	return ch
}

func requireWaiting(t *testing.T, ch chan uint64) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("ReadBegin returned %d while the interval was being invalidated", v)
	case <-time.After(20 * time.Millisecond):
	}
}

const page = PageSize

func TestSequenceScheme(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	a := &seqOps{}
	A, err := InsertInterval(mm, 0x10000, 4*page, a)
	require.NoError(t, err)
	seq, active := state(mm)
	require.Equal(t, uint64(2), seq, "invalidate_seq starts at 2")
	require.Zero(t, active)
	require.Equal(t, uint64(1), A.seq.Load(), "idle insert: current - 1")
	require.Equal(t, uint64(1), A.ReadBegin(), "not colliding: no wait")
	require.False(t, A.ReadRetry(1))

	// An overlapping invalidation: odd, frozen, readers wait for its end.
	end := begin(mm, 0x11000, 0x12000)
	seq, active = state(mm)
	require.Equal(t, uint64(3), seq)
	require.Equal(t, 1, active)
	require.Equal(t, []uint64{3}, a.calls(), "cur_seq is the odd sequence")
	require.True(t, A.ReadRetry(1))
	require.True(t, A.CheckRetry(1))
	waiter := readBegin(A)
	requireWaiting(t, waiter)
	end()
	require.Equal(t, uint64(3), <-waiter)
	seq, active = state(mm)
	require.Equal(t, uint64(4), seq, "the last end makes it even")
	require.Zero(t, active)
	require.False(t, A.ReadRetry(3))

	// A disjoint invalidation: partially excluded, even, nobody called.
	end = begin(mm, 0x20000, 0x21000)
	seq, active = state(mm)
	require.Equal(t, uint64(4), seq)
	require.Equal(t, 1, active)
	require.Empty(t, a.calls())
	require.Equal(t, uint64(3), A.ReadBegin(), "no collision, no wait")

	// Inserting meanwhile: the running invalidation might cover the new
	// range, so the sequence goes odd and the newcomer collides.
	b := &seqOps{}
	B, err := InsertInterval(mm, 0x20000, page, b)
	require.NoError(t, err)
	require.True(t, inTree(B), "the tree was not frozen: inserted at once")
	seq, _ = state(mm)
	require.Equal(t, uint64(5), seq)
	require.Equal(t, uint64(5), B.seq.Load())
	waiter = readBegin(B)
	requireWaiting(t, waiter)
	end()
	require.Equal(t, uint64(5), <-waiter)
	seq, active = state(mm)
	require.Equal(t, uint64(6), seq)
	require.Zero(t, active)

	// A disjoint invalidation ends with the sequence even: mn_itree_inv_end
	// leaves it alone, or the address space would look frozen while idle.
	end = begin(mm, 0x30000, 0x31000)
	end()
	seq, active = state(mm)
	require.Equal(t, uint64(6), seq)
	require.Zero(t, active)
}

func TestInsertAndRemoveAreDeferredWhileFrozen(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	a := &seqOps{}
	A, err := InsertInterval(mm, 0x10000, 4*page, a)
	require.NoError(t, err)

	end := begin(mm, 0x10000, 0x11000) // overlaps A: frozen
	c := &seqOps{}
	C, err := InsertInterval(mm, 0x10000, page, c)
	require.NoError(t, err)
	require.False(t, inTree(C), "deferred until the invalidation ends")
	seq, _ := state(mm)
	require.Equal(t, seq, C.seq.Load(), "starts out colliding")
	nested := begin(mm, 0x10000, 0x11000)
	require.Empty(t, c.calls(), "not in the tree yet")
	nested()
	require.False(t, inTree(C), "not until the last invalidation ends")

	// Removing a pending insert just forgets it, without waiting.
	d := &seqOps{}
	D, err := InsertInterval(mm, 0x10000, page, d)
	require.NoError(t, err)
	D.Remove()

	// Removing a live interval waits for the invalidation.
	removed := make(chan struct{})
	go func() { A.Remove(); close(removed) }()
	select {
	case <-removed:
		t.Fatal("Remove returned during the invalidation")
	case <-time.After(20 * time.Millisecond):
	}
	require.True(t, inTree(A))
	end()
	<-removed
	require.False(t, inTree(A))
	require.True(t, inTree(C))
	require.False(t, inTree(D))
	a.calls()

	end = begin(mm, 0x10000, 0x14000)
	end()
	require.Empty(t, a.calls(), "removed")
	require.Len(t, c.calls(), 1, "inserted")
	require.Empty(t, d.calls(), "never inserted")
	C.Remove()
	require.Equal(t, int32(1), mm.count.Load(), "every interval's pin dropped")
}

func TestRemoveWaitsForTheRunningInvalidation(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	a := &seqOps{entered: make(chan struct{}), leave: make(chan struct{})}
	A, err := InsertInterval(mm, 0x10000, page, a)
	require.NoError(t, err)
	entered := a.entered
	done := make(chan struct{})
	go func() {
		end := begin(mm, 0, 0x100000)
		end()
		close(done)
	}()
	<-entered
	removed := make(chan struct{})
	go func() { A.Remove(); close(removed) }()
	select {
	case <-removed:
		t.Fatal("Remove returned while Invalidate ran")
	case <-time.After(20 * time.Millisecond):
	}
	close(a.leave)
	<-removed
	<-done
	require.Len(t, a.calls(), 1)
}

// unmapNonblock starts a non-blockable EventUnmap invalidation of
// [start, end) under the mmap_lock read side, as the OOM reaper does, and
// returns its result.
func unmapNonblock(mm *MM, start, end uint64) error {
	r := NewRange(mm, EventUnmap, start, end)
	mm.mmapLock.RLock()
	defer mm.mmapLock.RUnlock()
	return InvalidateRangeStartNonblock(&r)
}

func TestNonBlockableIntervalRefusalUndoesTheStart(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	first, refusing, last := &seqOps{}, &seqOps{refuseNonblock: true}, &seqOps{}
	for i, o := range []*seqOps{first, refusing, last} {
		_, err := InsertInterval(mm, 0x10000+uint64(i)*page, page, o)
		require.NoError(t, err)
	}
	list := &Funcs{}
	_, err := Register(mm, list.Notifier())
	require.NoError(t, err)
	require.ErrorIs(t, unmapNonblock(mm, 0x10000, 0x13000), ErrAgain)
	require.Len(t, first.calls(), 1)
	require.Len(t, refusing.calls(), 1)
	require.Empty(t, last.calls(), "the walk stops at the refusal")
	// __mmu_notifier_invalidate_range_start returns the interval tree's
	// error before it walks the list.
	require.Zero(t, list.Counts().Starts)
	seq, active := state(mm)
	require.Zero(t, active, "undone: the caller must not call end")
	require.Zero(t, seq%2, "and the tree is unfrozen")
}

func TestListRefusalAfterIntervalsUndoesTheIntervalStart(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	_, err := InsertInterval(mm, 0x10000, page, &seqOps{})
	require.NoError(t, err)
	f := &Funcs{Start: func(*Range) error { return ErrAgain }}
	_, err = Register(mm, f.Notifier())
	require.NoError(t, err)
	require.ErrorIs(t, unmapNonblock(mm, 0x10000, 0x11000), ErrAgain)
	seq, active := state(mm)
	require.Zero(t, active, "deviation: the kernel would leave this at 1 for good")
	require.Zero(t, seq%2)
}

// A list notifier's refusal on an address space without intervals leaves
// the interval bookkeeping alone: there is no interval start to undo, and
// an interval inserted later is not taken for one being invalidated.
func TestListRefusalWithoutIntervalsLeavesTheIntervalStateAlone(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	f := &Funcs{Start: func(*Range) error { return ErrAgain }}
	_, err := Register(mm, f.Notifier())
	require.NoError(t, err)
	require.ErrorIs(t, unmapNonblock(mm, 0x10000, 0x11000), ErrAgain)
	seq, active := state(mm)
	require.Zero(t, active)
	require.Equal(t, uint64(2), seq)
	A, err := InsertInterval(mm, 0x10000, page, &seqOps{})
	require.NoError(t, err)
	require.True(t, inTree(A))
	readBeginReturns(t, A)
}

func TestBlockableIntervalRefusalIsReportedAndSkipped(t *testing.T) {
	rec := krulestest.Record(t)
	mm := testMM(t)
	refusing, next := &seqOps{refuse: true}, &seqOps{}
	R, err := InsertInterval(mm, 0x10000, page, refusing)
	require.NoError(t, err)
	defer R.Remove()
	_, err = InsertInterval(mm, 0x11000, page, next)
	require.NoError(t, err)
	list := &Funcs{End: func(*Range) {}}
	_, err = Register(mm, list.Notifier())
	require.NoError(t, err)
	begin(mm, 0x10000, 0x12000)()
	require.Len(t, next.calls(), 1, "the walk goes on")
	// The start did not fail, so the list's end comes once, from the end
	// (mn_hlist_invalidate_range_start unwinds only on an error).
	require.Equal(t, Counts{Starts: 1, Ends: 1}, list.Counts())
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "WARN_ON(mmu_notifier_range_blockable(range))")
	require.Contains(t, rec.Last().Text, "mmnotifier.(*seqOps).Invalidate")
}

func TestExitSendsReleaseThenUnmap(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	addr, err := mm.Mmap(2*page, ProtReadWrite)
	require.NoError(t, err)
	o := &seqOps{}
	A, err := InsertInterval(mm, addr, 2*page, o)
	require.NoError(t, err)
	// mn_itree_release's range ends at ULONG_MAX, and so does exit_mmap's
	// unmap: the top page of the address space is released too.
	top := &seqOps{}
	T, err := InsertInterval(mm, ^uint64(page-1), page, top)
	require.NoError(t, err)
	mm.Exit()
	require.Equal(t, []Event{EventRelease, EventUnmap}, o.events)
	require.Equal(t, []Event{EventRelease, EventUnmap}, top.events)
	A.Remove() // still allowed after exit
	T.Remove()
	require.Zero(t, mm.count.Load())
}

func TestIntervalMisuse(t *testing.T) {
	rec := krulestest.Record(t)
	mm := testMM(t)
	_, err := InsertInterval(mm, ^uint64(0)-page, 2*page, &seqOps{})
	require.ErrorIs(t, err, ErrOverflow)
	_, err = InsertInterval(mm, 0x1000, 0, &seqOps{})
	require.ErrorIs(t, err, ErrOverflow)
	A, err := InsertInterval(mm, 0x1000, page, &seqOps{})
	require.NoError(t, err)
	A.Remove()
	A.Remove()
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "removed twice")
	mm.Exit()
	_, err = InsertInterval(mm, 0x1000, page, &seqOps{})
	require.ErrorIs(t, err, ErrInvalid)
	require.Len(t, rec.Reports(), 2)
	require.Contains(t, rec.Last().Text, "mm_users) <= 0")
}

func TestIntervalRefusingReleaseIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	mm := testMM(t)
	A, err := InsertInterval(mm, 0x10000, page, &seqOps{refuse: true})
	require.NoError(t, err)
	mm.Exit()
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "WARN_ON(!ret)")
	require.Contains(t, rec.Last().Text, "MMU_NOTIFY_RELEASE")
	A.Remove()
}

func TestTooManyPutsAreReported(t *testing.T) {
	rec := krulestest.Record(t)
	mm := testMM(t)
	mm.Exit()
	mm.Put()
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "mm_users underflow")
	require.Zero(t, mm.Users())
	require.False(t, mm.GetNotZero())
}

// readBeginReturns requires ReadBegin to return (not hang) and returns its
// sequence number.
func readBeginReturns(t *testing.T, sub *IntervalNotifier) uint64 {
	t.Helper()
	select {
	case seq := <-readBegin(sub):
		return seq
	case <-time.After(5 * time.Second):
		t.Fatal("ReadBegin hangs")
		return 0
	}
}

// An InvalidateRangeEnd without its start is reported and changes
// nothing: the sequence stays usable, later invalidations pair up and no
// ReadBegin hangs.
func TestEndWithoutStartIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	mm := testMM(t)
	a := &seqOps{}
	A, err := InsertInterval(mm, 0x10000, page, a)
	require.NoError(t, err)
	readBeginReturns(t, A)

	r := NewRange(mm, EventClear, 0x10000, 0x11000)
	mm.mmapLock.RLock()
	InvalidateRangeEnd(&r)
	mm.mmapLock.RUnlock()
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "mmu_notifier_invalidate_range_end without a matching start: [0x10000-0x11000) MMU_NOTIFY_CLEAR")
	require.Regexp(t, ` at mmnotifier/interval_internal_test\.go:\d+ mmnotifier\.TestEndWithoutStartIsReported\+`, rec.Last().Headline, "the WARNING names the caller")
	seq, active := state(mm)
	require.Zero(t, active)
	require.Zero(t, seq&1, "not invalidating")

	end := begin(mm, 0x10000, 0x11000) // a proper pair
	end()
	mm.mmapLock.RLock()
	InvalidateRangeEnd(&r) // r's start never came; a second stray end
	mm.mmapLock.RUnlock()
	require.Len(t, rec.Kinds(), 2)
	seq = readBeginReturns(t, A)
	require.False(t, A.ReadRetry(seq))
	require.Len(t, a.calls(), 1, "only the proper pair invalidated the interval")

	r2 := NewRange(mm, EventClear, 0x10000, 0x11000) // ended twice
	mm.mmapLock.RLock()
	InvalidateRangeStart(&r2)
	InvalidateRangeEnd(&r2)
	InvalidateRangeEnd(&r2)
	mm.mmapLock.RUnlock()
	require.Len(t, rec.Kinds(), 3)
	readBeginReturns(t, A)
}

// A refused range's end is a no-op once: a second end of it has no start
// to match and is reported as any stray end is.
func TestARefusedRangeEndsOnce(t *testing.T) {
	rec := krulestest.Record(t)
	mm := testMM(t)
	r := NewRange(mm, EventClear, 0x11000, 0x10000)
	mm.mmapLock.RLock()
	InvalidateRangeStart(&r)
	InvalidateRangeEnd(&r)
	require.Len(t, rec.Kinds(), 1, "the refusal, and a silent end")
	InvalidateRangeEnd(&r)
	mm.mmapLock.RUnlock()
	require.Equal(t, []krules.Kind{krules.NotifierMisuse, krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "mmu_notifier_invalidate_range_end without a matching start")
}

// A reversed or empty range is refused before any notifier sees it, as
// Unmap refuses a zero length; its end is then a no-op, and the
// non-blockable start returns ErrInvalid.
func TestReversedRangeIsRefused(t *testing.T) {
	rec := krulestest.Record(t)
	mm := testMM(t)
	a := &seqOps{}
	A, err := InsertInterval(mm, 0x10000, page, a)
	require.NoError(t, err)
	list := &Funcs{}
	_, err = Register(mm, list.Notifier())
	require.NoError(t, err)

	for i, se := range [][2]uint64{{0x11000, 0x10000}, {0x10000, 0x10000}, {^uint64(0), 0}} {
		r := NewRange(mm, EventClear, se[0], se[1])
		mm.mmapLock.RLock()
		InvalidateRangeStart(&r)
		InvalidateRangeEnd(&r)
		r2 := NewRange(mm, EventUnmap, se[0], se[1])
		require.ErrorIs(t, InvalidateRangeStartNonblock(&r2), ErrInvalid)
		mm.mmapLock.RUnlock()
		require.Len(t, rec.Kinds(), 2*(i+1))
		require.Contains(t, rec.Last().Text, "WARN_ON(range->start >= range->end)")
		for _, r := range rec.Reports()[2*i:] {
			require.Regexp(t, ` at mmnotifier/interval_internal_test\.go:\d+ mmnotifier\.TestReversedRangeIsRefused\+`, r.Headline, "the WARNING names the caller")
		}
	}
	for _, k := range rec.Kinds() {
		require.Equal(t, krules.NotifierMisuse, k)
	}
	require.Empty(t, a.calls(), "no interval notifier saw a bad range")
	require.Zero(t, list.Counts().Starts)
	seq, active := state(mm)
	require.Zero(t, active)
	require.Zero(t, seq&1)
	readBeginReturns(t, A)
}

// mmu_interval_notifier_insert refuses a length of 0 in its own right
// (-EOVERFLOW), not only through the overflow of start + length - 1,
// which at address 0 does not overflow.
func TestIntervalOfLengthZeroAtAddressZeroIsRefused(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	_, err := InsertInterval(mm, 0, 0, &seqOps{})
	require.ErrorIs(t, err, ErrOverflow)
}

// mn_itree_inv_start_range looks up [start, end-1]: a range's end is
// exclusive, so an interval that starts at it is not invalidated, and one
// that ends just before its start is not either.
func TestInvalidationRangeEndIsExclusive(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	a := &seqOps{}
	A, err := InsertInterval(mm, 0x20000, page, a)
	require.NoError(t, err)
	defer A.Remove()
	begin(mm, 0x10000, 0x20000)()
	begin(mm, 0x21000, 0x30000)()
	require.Empty(t, a.calls())
	begin(mm, 0x10000, 0x20001)()
	require.Len(t, a.calls(), 1)
}

// mn_itree_inv_end applies the deferred list once and empties it: an
// interval whose insertion was deferred stays in the tree through later
// invalidations, rather than being toggled out again.
func TestDeferredInsertIsAppliedOnce(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	A, err := InsertInterval(mm, 0x10000, page, &seqOps{})
	require.NoError(t, err)
	defer A.Remove()
	end := begin(mm, 0x10000, 0x11000) // overlaps A: frozen
	c := &seqOps{}
	C, err := InsertInterval(mm, 0x20000, page, c)
	require.NoError(t, err)
	end()
	require.True(t, inTree(C))
	begin(mm, 0x10000, 0x11000)() // frozen and released again
	require.True(t, inTree(C))
	begin(mm, 0x20000, 0x21000)()
	require.Len(t, c.calls(), 1)
	C.Remove()
}

// A non-blockable start that failed with -EAGAIN has undone itself, and
// the caller must not call end: an end called anyway is reported as an
// end without a start and changes nothing, so the tree's count of active
// invalidations stays balanced.
func TestEndAfterAFailedNonblockStartIsRefused(t *testing.T) {
	rec := krulestest.Record(t)
	mm := testMM(t)
	_, err := InsertInterval(mm, 0x10000, page, &seqOps{refuseNonblock: true})
	require.NoError(t, err)
	r := NewRange(mm, EventUnmap, 0x10000, 0x11000)
	mm.mmapLock.RLock()
	require.ErrorIs(t, InvalidateRangeStartNonblock(&r), ErrAgain)
	InvalidateRangeEnd(&r)
	mm.mmapLock.RUnlock()
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "mmu_notifier_invalidate_range_end without a matching start")
	seq, active := state(mm)
	require.Zero(t, active)
	require.Zero(t, seq%2)
}

// __mmu_interval_notifier_insert with no invalidation active finds the
// sequence even, or WARN_ON(mn_itree_is_invalidating(subscriptions)). Only
// broken bookkeeping gets there, so the test breaks it.
func TestInsertWithTheTreeOddAndNoInvalidationIsReported(t *testing.T) {
	mm := testMM(t)
	rec := krulestest.Record(t)
	_, err := InsertInterval(mm, 0x10000, page, &seqOps{})
	require.NoError(t, err)
	subs := mm.subs.Load()
	even := subs.seq.Load()
	require.Zero(t, even%2)
	subs.seq.Store(even | 1)
	_, err = InsertInterval(mm, 0x20000, page, &seqOps{})
	require.NoError(t, err)
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "WARN_ON(mn_itree_is_invalidating(subscriptions))")
	subs.seq.Store(even) // mended, for the test's Exit
}

// mmu_interval_notifier_remove outside an invalidation finds the interval
// in the tree, or WARN_ON(RB_EMPTY_NODE(...)). Only broken bookkeeping gets
// there, so the test breaks it.
func TestRemoveOfAnIntervalMissingFromTheTreeIsReported(t *testing.T) {
	mm := testMM(t)
	rec := krulestest.Record(t)
	sub, err := InsertInterval(mm, 0x10000, page, &seqOps{})
	require.NoError(t, err)
	subs := mm.subs.Load()
	subs.lock.Lock()
	subs.unlink(sub)
	subs.lock.Unlock()
	sub.Remove()
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "WARN_ON(RB_EMPTY_NODE(&interval_sub->interval_tree.rb))")
}

// mmu_interval_notifier_insert_locked is for a caller that holds mmap_lock
// for writing: the interval is inserted, registering the tree on first use,
// and is invalidated as any other.
func TestInsertIntervalLocked(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	a := &seqOps{}
	mm.mmapLock.Lock()
	A, err := InsertIntervalLocked(mm, 0x10000, page, a)
	mm.mmapLock.Unlock()
	require.NoError(t, err)
	require.Equal(t, "[0x10000-0x10fff]", A.String())
	require.True(t, inTree(A))
	begin(mm, 0x10000, 0x11000)()
	require.Equal(t, []uint64{3}, a.calls())
	A.Remove()
}
