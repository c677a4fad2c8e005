package mmnotifier_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
	"github.com/krules/krules/nonblock"
)

const pg = mmnotifier.PageSize

var errDeviceGone = errors.New("device gone")

func TestNewestNotifierIsCalledFirst(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	rec := &recorder{}
	for _, name := range []string{"a", "b", "c"} {
		_, err := mmnotifier.Register(mm, &recNotifier{name, rec})
		require.NoError(t, err)
	}
	addr := mapTouched(t, mm, 4)
	require.NoError(t, mm.Unmap(addr, 4*pg))
	require.Equal(t, []string{"c.start", "b.start", "a.start", "c.end", "b.end", "a.end"}, rec.whats())
}

func TestEachOperationInvalidatesWithItsEvent(t *testing.T) {
	krulestest.Check(t)
	mm, rec := recordedMM(t)
	addr := mapTouched(t, mm, 8)

	starts := func() []call {
		var out []call
		for _, c := range rec.take() {
			if c.what == "start" {
				c.who, c.what = "", ""
				out = append(out, c)
			}
		}
		return out
	}

	require.NoError(t, mm.Protect(addr, 2*pg, mmnotifier.ProtRead))
	require.Equal(t, []call{{event: mmnotifier.EventProtectionVMA, start: addr, end: addr + 2*pg, blockable: true}}, starts())
	require.NoError(t, mm.Protect(addr, 2*pg, mmnotifier.ProtRead), "no change, no invalidation")
	require.Empty(t, starts())
	_, err := mm.Fault(addr, true)
	require.ErrorIs(t, err, mmnotifier.ErrFault, "read-only now")

	require.NoError(t, mm.Discard(addr+2*pg, 2*pg))
	require.Equal(t, []call{{event: mmnotifier.EventClear, start: addr + 2*pg, end: addr + 4*pg, blockable: true}}, starts())
	_, ok := mm.Lookup(addr + 2*pg)
	require.False(t, ok, "discarded")

	owner := &struct{ dev int }{}
	before, _ := mm.Lookup(addr + 4*pg)
	require.NoError(t, mm.Write(addr+4*pg, []byte("hello")))
	n, err := mm.Migrate(addr+4*pg, 2*pg, owner)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, []call{{event: mmnotifier.EventMigrate, start: addr + 4*pg, end: addr + 6*pg, blockable: true, owner: owner}}, starts())
	after, _ := mm.Lookup(addr + 4*pg)
	require.NotEqual(t, before, after, "migrated to another page")
	buf := make([]byte, 5)
	require.NoError(t, mm.Read(addr+4*pg, buf))
	require.Equal(t, "hello", string(buf), "contents moved along")
	_, err = mm.Migrate(addr+6*pg, 4*pg, owner) // runs past the mapping's end
	require.ErrorIs(t, err, mmnotifier.ErrInvalid, "migrate_vma_setup: end > vma->vm_end")
	require.Empty(t, starts(), "a refused migration invalidates nothing")

	mm.ClearSoftDirty()
	require.Equal(t, []call{{event: mmnotifier.EventSoftDirty, start: 0, end: ^uint64(0), blockable: true}}, starts())
	require.False(t, mm.SoftDirty(addr+6*pg))
	require.NoError(t, mm.Write(addr+6*pg, []byte{1}))
	require.True(t, mm.SoftDirty(addr+6*pg))

	require.NoError(t, mm.Unmap(addr, 8*pg))
	require.Equal(t, []call{{event: mmnotifier.EventUnmap, start: addr, end: addr + 8*pg, blockable: true}}, starts())
	require.NoError(t, mm.Unmap(addr, 8*pg), "nothing left to unmap")
	require.Empty(t, starts())
	require.Zero(t, mm.RSS())
}

// munmap and the OOM reaper free pages in tlb_finish_mmu, after the
// invalidation's end.
func TestPagesAreFreedAfterTheEnd(t *testing.T) {
	for _, tc := range []struct {
		name string
		zap  func(t *testing.T, mm *mmnotifier.MM, addr uint64)
	}{
		{"munmap", func(t *testing.T, mm *mmnotifier.MM, addr uint64) { require.NoError(t, mm.Unmap(addr, 2*pg)) }},
		{"OOM reaper", func(t *testing.T, mm *mmnotifier.MM, _ uint64) {
			require.True(t, mm.OOMReap(context.Background()).Reaped)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			krulestest.Check(t)
			krulestest.CaptureLog(t)
			mm := newMM(t)
			addr := mapTouched(t, mm, 2)
			pfn, ok := mm.Lookup(addr)
			require.True(t, ok)
			page := mm.Zone().PageByPFN(pfn)
			var atStart, atEnd bool
			_, err := mmnotifier.Register(mm, endFuncs(
				func(*mmnotifier.Range) error { atStart = page.InUse(); return nil },
				func(*mmnotifier.Range) { atEnd = page.InUse() }))
			require.NoError(t, err)
			tc.zap(t, mm, addr)
			require.True(t, atStart, "still mapped at start")
			require.True(t, atEnd, "freed only after the end, as tlb_finish_mmu")
			require.False(t, page.InUse())
		})
	}
}

func endFuncs(start func(*mmnotifier.Range) error, end func(*mmnotifier.Range)) mmnotifier.Notifier {
	f := &mmnotifier.Funcs{Start: start, End: end}
	return f.Notifier()
}

func TestFuncsCountsAndShapesTheNotifier(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	plain := &mmnotifier.Funcs{}
	full := &mmnotifier.Funcs{End: func(*mmnotifier.Range) {}, Release: func(*mmnotifier.MM) {}}
	rel := &mmnotifier.Funcs{Release: func(*mmnotifier.MM) {}}
	_, isEnd := plain.Notifier().(mmnotifier.EndNotifier)
	require.False(t, isEnd, "no End, no end callback")
	_, isEnd = full.Notifier().(mmnotifier.EndNotifier)
	require.True(t, isEnd)
	_, isRel := full.Notifier().(mmnotifier.ReleaseNotifier)
	require.True(t, isRel)
	_, isEnd = rel.Notifier().(mmnotifier.EndNotifier)
	require.False(t, isEnd, "a Release alone makes no end callback")
	endOnly := (&mmnotifier.Funcs{End: func(*mmnotifier.Range) {}}).Notifier()
	_, isEnd = endOnly.(mmnotifier.EndNotifier)
	require.True(t, isEnd)
	_, isRel = endOnly.(mmnotifier.ReleaseNotifier)
	require.False(t, isRel, "an End alone makes no release callback")
	_, isRel = rel.Notifier().(mmnotifier.ReleaseNotifier)
	require.True(t, isRel)
	for _, f := range []*mmnotifier.Funcs{plain, full, rel} {
		_, err := mmnotifier.Register(mm, f.Notifier())
		require.NoError(t, err)
	}
	addr := mapTouched(t, mm, 1)
	require.NoError(t, mm.Discard(addr, pg))
	require.NoError(t, mm.Discard(addr, pg))
	require.Equal(t, mmnotifier.Counts{Starts: 2}, plain.Counts())
	require.Equal(t, mmnotifier.Counts{Starts: 2, Ends: 2}, full.Counts())
	mm.Exit()
	require.Equal(t, mmnotifier.Counts{Starts: 2, Ends: 2, Releases: 1}, full.Counts())
	require.Equal(t, mmnotifier.Counts{Starts: 2, Releases: 1}, rel.Counts())
}

func TestUnregisterCallsReleaseAndStopsCallbacks(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	rec := &recorder{}
	sub, err := mmnotifier.Register(mm, &recNotifier{"n", rec})
	require.NoError(t, err)
	sub.Unregister()
	require.Equal(t, []string{"n.release"}, rec.whats())
	addr := mapTouched(t, mm, 1)
	require.NoError(t, mm.Unmap(addr, pg))
	require.Empty(t, rec.whats(), "no callback after Unregister")
}

func TestExitReleasesOnceAndUnregisterAfterwardDoesNot(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	rec := &recorder{}
	sub, err := mmnotifier.Register(mm, &recNotifier{"n", rec})
	require.NoError(t, err)
	addr := mapTouched(t, mm, 3)
	_ = addr
	mm.Exit()
	require.Equal(t, []string{"n.release"}, rec.whats(), "released; the final unmap finds the list empty")
	require.Zero(t, mm.RSS())
	sub.Unregister()
	require.Empty(t, rec.whats())
}

// mmget takes a user reference: the owner's exit (exit_mm's mmput) then
// leaves the address space alone, and the last mmput tears it down
// (exit_mmap), releasing the notifiers and freeing the pages.
func TestAUserReferenceOutlivesTheOwnersExit(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	rec := &recorder{}
	n := &recNotifier{"n", rec}
	sub, err := mmnotifier.Register(mm, n)
	require.NoError(t, err)
	require.Same(t, n, sub.Notifier())
	require.Same(t, mm, sub.MM())
	mapTouched(t, mm, 3)
	mm.Get()
	require.Equal(t, 2, mm.Users())
	mm.Exit()
	require.Equal(t, 1, mm.Users())
	require.Empty(t, rec.whats(), "another user holds it")
	require.EqualValues(t, 3, mm.RSS())
	mm.Put()
	require.Equal(t, []string{"n.release"}, rec.whats())
	require.Zero(t, mm.RSS())
	sub.Unregister()
}

// Unregister waits for a callback that is running, whichever epoch its
// read section counted in: a run takes two grace periods (Unregister's and
// the cleanup's), so the second run, one grace period later, finds the
// epochs the other way round.
func TestUnregisterWaitsForRunningCallbacks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		inEnd bool // the end callback runs, not the start
	}{{"start", false}, {"start after a grace period", false}, {"end", true}} {
		if tc.name == "start after a grace period" {
			mmnotifier.Synchronize()
		}
		t.Run(tc.name, func(t *testing.T) { unregisterWaitsForARunningCallback(t, tc.inEnd) })
	}
}

func unregisterWaitsForARunningCallback(t *testing.T, inEnd bool) {
	krulestest.Check(t)
	mm := newMM(t)
	entered, leave := make(chan struct{}), make(chan struct{})
	var returned, early atomic.Bool
	run := func() {
		close(entered)
		<-leave
		early.Store(returned.Load()) // checked on the test's goroutine
	}
	f := &mmnotifier.Funcs{Start: func(*mmnotifier.Range) error {
		if !inEnd {
			run()
		}
		return nil
	}}
	if inEnd {
		f.End = func(*mmnotifier.Range) { run() }
	}
	sub, err := mmnotifier.Register(mm, f.Notifier())
	require.NoError(t, err)
	addr := mapTouched(t, mm, 1)
	unmapped := make(chan error)
	go func() { unmapped <- mm.Discard(addr, pg) }()
	<-entered
	unregistered := make(chan struct{})
	go func() {
		sub.Unregister()
		returned.Store(true)
		close(unregistered)
	}()
	waited := true
	select {
	case <-unregistered:
		waited = false
	case <-time.After(50 * time.Millisecond):
	}
	close(leave)
	<-unregistered
	require.NoError(t, <-unmapped)
	require.True(t, waited, "Unregister did not wait for the running callback")
	require.False(t, early.Load(), "Unregister returned while a callback ran")
}

// Synchronize is a grace period before anything else
// (mmu_notifier_synchronize is synchronize_srcu): it waits for a callback
// that is running, whether or not its caller holds locks of its own.
func TestSynchronizeWaitsForARunningCallback(t *testing.T) {
	for _, held := range []bool{false, true} {
		t.Run(fmt.Sprintf("driver lock held %v", held), func(t *testing.T) {
			krulestest.Check(t)
			mm := newMM(t)
			entered, leave := make(chan struct{}), make(chan struct{})
			f := &mmnotifier.Funcs{Start: func(*mmnotifier.Range) error {
				close(entered)
				<-leave
				return nil
			}}
			_, err := mmnotifier.Register(mm, f.Notifier())
			require.NoError(t, err)
			addr := mapTouched(t, mm, 1)
			unmapped := make(chan error)
			go func() { unmapped <- mm.Discard(addr, pg) }()
			<-entered
			mu := driverLock()
			synced := make(chan struct{})
			go func() {
				if held {
					mu.Lock()
					defer mu.Unlock()
				}
				mmnotifier.Synchronize()
				close(synced)
			}()
			waited := true
			select {
			case <-synced:
				waited = false
			case <-time.After(50 * time.Millisecond):
			}
			close(leave)
			<-synced
			require.NoError(t, <-unmapped)
			require.True(t, waited, "Synchronize returned while a callback ran")
		})
	}
}

func TestRegisterOnDeadAddressSpaceIsReported(t *testing.T) {
	krulestest.ResetDefault(t) // the BUG_ON's oops turns lock debugging off
	rec := krulestest.Record(t)
	mm := newMM(t)
	mm.Exit()
	_, err := mmnotifier.Register(mm, (&mmnotifier.Funcs{}).Notifier())
	require.ErrorIs(t, err, mmnotifier.ErrInvalid)
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "BUG_ON(atomic_read(&mm->mm_users) <= 0)")
}

// mmu_notifier_get_locked frees what alloc_notifier made when
// __mmu_notifier_register refuses it (out_free: ops->free_notifier): Get on
// an address space with no users is reported, fails and frees its notifier.
func TestGetOnDeadAddressSpaceFreesTheNotifier(t *testing.T) {
	krulestest.ResetDefault(t) // the BUG_ON's oops turns lock debugging off
	rec := krulestest.Record(t)
	mm := newMM(t)
	mm.Exit()
	a := &alloc{rec: &recorder{}}
	sub, err := mmnotifier.Get(mm, a)
	require.ErrorIs(t, err, mmnotifier.ErrInvalid)
	require.Nil(t, sub)
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "BUG_ON(atomic_read(&mm->mm_users) <= 0)")
	require.EqualValues(t, 1, a.made.Load())
	require.EqualValues(t, 1, a.freed.Load(), "freed at once, never registered")
}

// The first interval of an address space registers its tree
// (__mmu_notifier_register), which finds no users left:
// BUG_ON(mm_users <= 0), and the insertion fails.
func TestInsertIntervalOnDeadAddressSpaceIsReported(t *testing.T) {
	krulestest.ResetDefault(t) // the BUG_ON's oops turns lock debugging off
	rec := krulestest.Record(t)
	mm := newMM(t)
	mm.Exit()
	sub, err := mmnotifier.InsertInterval(mm, 0x10000, pg, intervalSeq{})
	require.ErrorIs(t, err, mmnotifier.ErrInvalid)
	require.Nil(t, sub)
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "BUG_ON(atomic_read(&mm->mm_users) <= 0)")
}

// failingAlloc is an Allocator whose alloc_notifier fails.
type failingAlloc struct{ freed atomic.Int32 }

var errNoNotifier = errors.New("no notifier")

func (*failingAlloc) AllocNotifier(*mmnotifier.MM) (mmnotifier.Notifier, error) {
	return nil, errNoNotifier
}

func (a *failingAlloc) FreeNotifier(mmnotifier.Notifier) { a.freed.Add(1) }

// mmu_notifier_get_locked returns alloc_notifier's error as it is, with
// nothing registered and nothing to free; the next Get asks again.
func TestGetReturnsTheAllocatorsError(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	a := &failingAlloc{}
	for range 2 {
		sub, err := mmnotifier.Get(mm, a)
		require.ErrorIs(t, err, errNoNotifier)
		require.Nil(t, sub)
	}
	require.Zero(t, a.freed.Load())
}

// A nil notifier is refused: registered, it would make every later
// invalidation, Exit included, call a method on nil.
func TestRegisterRefusesNilNotifier(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	sub, err := mmnotifier.Register(mm, nil)
	require.ErrorIs(t, err, mmnotifier.ErrInvalid)
	require.Nil(t, sub)
	_, err = mmnotifier.Get(mm, nilAlloc{})
	require.ErrorIs(t, err, mmnotifier.ErrInvalid)
	addr := mapTouched(t, mm, 1)
	require.NoError(t, mm.Discard(addr, pg))
	require.NoError(t, mm.Unmap(addr, pg))
	mm.Exit()
}

// nilAlloc is an Allocator whose AllocNotifier returns no notifier and no
// error.
type nilAlloc struct{}

func (nilAlloc) AllocNotifier(*mmnotifier.MM) (mmnotifier.Notifier, error) { return nil, nil }
func (nilAlloc) FreeNotifier(mmnotifier.Notifier)                          {}

func TestUnregisterTwiceIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	mm := newMM(t)
	sub, err := mmnotifier.Register(mm, (&mmnotifier.Funcs{}).Notifier())
	require.NoError(t, err)
	sub.Unregister()
	sub.Unregister()
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
}

// alloc is an Allocator that counts.
type alloc struct {
	rec         *recorder
	made, freed atomic.Int32
}

func (a *alloc) AllocNotifier(*mmnotifier.MM) (mmnotifier.Notifier, error) {
	a.made.Add(1)
	return &recNotifier{"shared", a.rec}, nil
}

func (a *alloc) FreeNotifier(mmnotifier.Notifier) { a.freed.Add(1) }

func TestGetSharesOneNotifierPerAllocatorAndAddressSpace(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	a, b := &alloc{rec: &recorder{}}, &alloc{rec: &recorder{}}
	s1, err := mmnotifier.Get(mm, a)
	require.NoError(t, err)
	s2, err := mmnotifier.Get(mm, a)
	require.NoError(t, err)
	require.Same(t, s1, s2)
	s3, err := mmnotifier.Get(mm, b)
	require.NoError(t, err)
	require.NotSame(t, s1, s3)
	require.EqualValues(t, 1, a.made.Load())

	addr := mapTouched(t, mm, 1)
	s1.Put()
	require.NoError(t, mm.Discard(addr, pg))
	require.Equal(t, []string{"shared.start", "shared.end"}, a.rec.whats(), "one user left")
	s2.Put()
	mmnotifier.Synchronize()
	require.EqualValues(t, 1, a.freed.Load(), "freed after the grace period")
	require.NoError(t, mm.Discard(addr, pg))
	require.Empty(t, a.rec.whats(), "gone from the list")
	require.Len(t, b.rec.whats(), 4, "b saw both discards")

	s4, err := mmnotifier.Get(mm, a)
	require.NoError(t, err)
	require.NotSame(t, s1, s4, "a fresh one after the last Put")
	require.EqualValues(t, 2, a.made.Load())
	s4.Put()
	s3.Put()
	mmnotifier.Synchronize()
	require.EqualValues(t, 2, a.freed.Load())
	require.EqualValues(t, 1, b.freed.Load())
}

func TestPutMisuseIsReported(t *testing.T) {
	rec := krulestest.Record(t)
	mm := newMM(t)
	a := &alloc{rec: &recorder{}}
	s, err := mmnotifier.Get(mm, a)
	require.NoError(t, err)
	s.Put()
	s.Put()
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "WARN_ON(!subscription->users)")
	plain, err := mmnotifier.Register(mm, (&mmnotifier.Funcs{}).Notifier())
	require.NoError(t, err)
	plain.Unregister()
	plain.Put()
	require.Len(t, rec.Reports(), 2, "Put after Unregister")
	require.Contains(t, rec.Last().Text, "WARN_ON(!subscription->users)")
}

// freeing is a notifier that offers its own free_notifier.
type freeing struct {
	recNotifier
	freed atomic.Int32
}

func (f *freeing) FreeNotifier() {
	nonblock.CantSleep() // reports unless in an atomic context
	f.freed.Add(1)
}

// A notifier registered with Register may be dropped with Put, as
// __mmu_notifier_register counts the registration as its one user
// (nouveau_svmm_fini does exactly this): it leaves the list and, after a
// grace period, its own FreeNotifier runs, in an atomic context.
func TestPutAfterRegister(t *testing.T) {
	rec := krulestest.Record(t)
	mm := newMM(t)
	order := &recorder{}
	n := &freeing{recNotifier: recNotifier{"svmm", order}}
	s, err := mmnotifier.Register(mm, n)
	require.NoError(t, err)
	addr := mapTouched(t, mm, 1)
	s.Put()
	mmnotifier.Synchronize()
	require.Empty(t, rec.Kinds(), "free_notifier ran in an atomic context (an SRCU callback)")
	require.EqualValues(t, 1, n.freed.Load())
	require.NoError(t, mm.Discard(addr, pg))
	require.Empty(t, order.whats(), "gone from the list")

	plain, err := mmnotifier.Register(mm, (&mmnotifier.Funcs{}).Notifier())
	require.NoError(t, err)
	plain.Put() // no FreeNotifier: nothing to call
	mmnotifier.Synchronize()
	require.Empty(t, rec.Kinds())
	plain.Put()
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "WARN_ON(!subscription->users)")
	plain.Unregister()
	require.Equal(t, []krules.Kind{krules.NotifierMisuse, krules.NotifierMisuse}, rec.Kinds(), "Unregister after Put")
	mm.Exit()
	require.Len(t, rec.Kinds(), 2, "nothing left registered at exit")
}

// stuckFreeing is a freeing notifier whose start waits, once entered, until
// out is closed.
type stuckFreeing struct {
	freeing
	in, out chan struct{}
}

func (n *stuckFreeing) InvalidateRangeStart(*mmnotifier.Range) error {
	close(n.in)
	<-n.out
	return nil
}

// mmu_notifier_put frees the notifier from an SRCU callback (call_srcu),
// after a grace period: never while one of its callbacks still runs.
func TestPutFreesOnlyAfterRunningCallbacksReturn(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	n := &stuckFreeing{freeing: freeing{recNotifier: recNotifier{"n", &recorder{}}},
		in: make(chan struct{}), out: make(chan struct{})}
	s, err := mmnotifier.Register(mm, n)
	require.NoError(t, err)
	addr := mapTouched(t, mm, 1)
	done := make(chan error)
	go func() { done <- mm.Discard(addr, pg) }()
	<-n.in
	s.Put()
	time.Sleep(20 * time.Millisecond)
	early := n.freed.Load()
	close(n.out)
	require.NoError(t, <-done)
	require.Zero(t, early, "freed while its start was still running")
	mmnotifier.Synchronize()
	require.EqualValues(t, 1, n.freed.Load())
}

// A notifier whose start fails, in each context.
func TestFailureRules(t *testing.T) {
	again := func(*mmnotifier.Range) error { return mmnotifier.ErrAgain }
	for _, tc := range []struct {
		name      string
		blockable bool
		err       func(*mmnotifier.Range) error
		withEnd   bool
		log       string
		warns     []string
	}{
		{name: "EAGAIN non-blockable", err: again,
			log: "callback failed with -11 in non-blockable context."},
		{name: "EAGAIN blockable", blockable: true, err: again,
			log:   "callback failed with -11 in blockable context.",
			warns: []string{"WARN_ON(mmu_notifier_range_blockable(range) || _ret != -EAGAIN)"}},
		{name: "other error", err: func(*mmnotifier.Range) error { return mmnotifier.ErrInvalid },
			log:   "callback failed with -22 in non-blockable context.",
			warns: []string{"_ret != -EAGAIN"}},
		{name: "Go error", err: func(*mmnotifier.Range) error { return errDeviceGone },
			log:   `callback failed with "device gone" in non-blockable context.`,
			warns: []string{"_ret != -EAGAIN"}},
		{name: "failing with an end", err: again, withEnd: true,
			log:   "callback failed with -11 in non-blockable context.",
			warns: []string{"WARN_ON(ops->invalidate_range_end)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := krulestest.CaptureLog(t)
			rec := krulestest.Record(t)
			mm := newMM(t)
			order := &recorder{}
			_, err := mmnotifier.Register(mm, &recNotifier{"before", order}) // called last
			require.NoError(t, err)
			failing := &mmnotifier.Funcs{Start: tc.err}
			if tc.withEnd {
				failing.End = func(*mmnotifier.Range) { order.add(call{who: "failing", what: "end"}) }
			}
			_, err = mmnotifier.Register(mm, failing.Notifier())
			require.NoError(t, err)
			_, err = mmnotifier.Register(mm, &recNotifier{"after", order}) // called first
			require.NoError(t, err)

			r := mmnotifier.NewRange(mm, mmnotifier.EventUnmap, 0, pg)
			var err2 error
			mm.MmapLock().RLock()
			if tc.blockable {
				mmnotifier.InvalidateRangeStart(&r)
			} else {
				err2 = mmnotifier.InvalidateRangeStartNonblock(&r)
			}
			mm.MmapLock().RUnlock()
			if !tc.blockable {
				require.ErrorIs(t, err2, tc.err(&r))
			}

			require.Contains(t, log.String(), "mmnotifier_test.TestFailureRules")
			require.Contains(t, log.String(), tc.log)
			var kinds []krules.Kind
			for _, w := range tc.warns {
				kinds = append(kinds, krules.NotifierMisuse)
				found := false
				for _, r := range rec.Reports() {
					found = found || strings.Contains(r.Text, w)
				}
				require.True(t, found, "a WARNING with %q", w)
			}
			require.Equal(t, kinds, rec.Kinds())
			want := []string{"after.start", "before.start", "after.end", "before.end"}
			if tc.withEnd {
				want = []string{"after.start", "before.start", "after.end", "failing.end", "before.end"}
			}
			require.Equal(t, want, order.whats(), "every start runs, then the ends of the notifiers with one")
			require.Equal(t, int64(1), failing.Counts().Failures)
		})
	}
}

// might_sleep is where the kernel's mmu_notifier_invalidate_range_start and
// _end make it: every start, a refused one included; the end of a
// blockable range; never the end of a non-blockable one (the OOM
// reaper's), nor of a range of an address space without notifiers, which
// the start never marks blockable (MMU_NOTIFIER_RANGE_BLOCKABLE is set
// only if mm_has_notifiers). Each is run inside an atomic section, where
// a might_sleep reports.
func TestInvalidationsMightSleepWhereTheKernelSays(t *testing.T) {
	for _, tc := range []struct {
		name      string
		notifier  bool
		run       func(t *testing.T, mm *mmnotifier.MM)
		wantKinds []krules.Kind
	}{
		{"start of an empty range", false, func(t *testing.T, mm *mmnotifier.MM) {
			r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, 0)
			atomically(func() { mmnotifier.InvalidateRangeStart(&r) })
			mmnotifier.InvalidateRangeEnd(&r)
		}, []krules.Kind{krules.SleepInAtomic, krules.NotifierMisuse}},
		{"start of a range without notifiers", false, func(t *testing.T, mm *mmnotifier.MM) {
			r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, mmnotifier.PageSize)
			atomically(func() { mmnotifier.InvalidateRangeStart(&r) })
			mmnotifier.InvalidateRangeEnd(&r)
		}, []krules.Kind{krules.SleepInAtomic}},
		{"start of a range, a notifier", true, func(t *testing.T, mm *mmnotifier.MM) {
			r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, mmnotifier.PageSize)
			atomically(func() { mmnotifier.InvalidateRangeStart(&r) })
			mmnotifier.InvalidateRangeEnd(&r)
		}, []krules.Kind{krules.SleepInAtomic}},
		{"end of a range without notifiers", false, func(t *testing.T, mm *mmnotifier.MM) {
			r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, mmnotifier.PageSize)
			mmnotifier.InvalidateRangeStart(&r)
			require.False(t, r.Blockable())
			atomically(func() { mmnotifier.InvalidateRangeEnd(&r) })
		}, nil},
		{"end of a blockable range, a notifier", true, func(t *testing.T, mm *mmnotifier.MM) {
			r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, mmnotifier.PageSize)
			mmnotifier.InvalidateRangeStart(&r)
			atomically(func() { mmnotifier.InvalidateRangeEnd(&r) })
		}, []krules.Kind{krules.SleepInAtomic}},
		{"non-blockable range", true, func(t *testing.T, mm *mmnotifier.MM) {
			r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, mmnotifier.PageSize)
			atomically(func() {
				require.NoError(t, mmnotifier.InvalidateRangeStartNonblock(&r))
				mmnotifier.InvalidateRangeEnd(&r)
			})
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mm := newMM(t)
			if tc.notifier {
				_, err := mmnotifier.Register(mm, &recNotifier{name: "n", rec: &recorder{}})
				require.NoError(t, err)
			}
			rec := krulestest.Record(t)
			mm.MmapLock().RLock()
			tc.run(t, mm)
			mm.MmapLock().RUnlock()
			require.Equal(t, tc.wantKinds, rec.Kinds())
		})
	}
}

// atomically runs fn inside an atomic section.
func atomically(fn func()) {
	nonblock.StartAtomic()
	defer nonblock.EndAtomic()
	fn()
}

// The address-space operations touch only what is there: mprotect of a
// range never touched reaches no notifier (change_pud_range starts the
// invalidation at the first populated PUD), a read fault dirties nothing
// (only a write fault sets the dirty and soft-dirty bits), and
// madvise(MADV_DONTNEED) over a hole zaps the mapped parts and says ENOMEM,
// and munmap of a hole reaches no notifier, even right before a mapping.
func TestOperationsTouchOnlyWhatIsThere(t *testing.T) {
	krulestest.Check(t)
	mm, rec := recordedMM(t)
	addr, err := mm.Mmap(4*pg, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	require.NoError(t, mm.Protect(addr, 4*pg, mmnotifier.ProtRead))
	require.Empty(t, rec.take(), "no pages, no invalidation")
	require.NoError(t, mm.Protect(addr, 4*pg, mmnotifier.ProtReadWrite))
	_, err = mm.Fault(addr+3*pg, true)
	require.NoError(t, err)
	rec.take()
	// A piece without pages of its own is still invalidated when its page
	// table is there: v6.12 tests pud_none, not the PTEs.
	require.NoError(t, mm.Protect(addr, pg, mmnotifier.ProtRead))
	require.Equal(t, []call{
		{who: "n", what: "start", event: mmnotifier.EventProtectionVMA, start: addr, end: addr + pg, blockable: true},
		{who: "n", what: "end", event: mmnotifier.EventProtectionVMA, start: addr, end: addr + pg, blockable: true},
	}, rec.take(), "no pages in the piece, but its page table has one")

	require.NoError(t, mm.Protect(addr, 4*pg, mmnotifier.ProtReadWrite))
	require.NoError(t, mm.Discard(addr+3*pg, pg))
	_, err = mm.Fault(addr, false)
	require.NoError(t, err)
	require.False(t, mm.SoftDirty(addr), "a read fault")
	_, err = mm.Fault(addr, true)
	require.NoError(t, err)
	require.True(t, mm.SoftDirty(addr), "a write fault")

	// madvise(MADV_DONTNEED) over a hole: the mapped parts are zapped,
	// and the call says ENOMEM.
	for a := addr; a < addr+3*pg; a += pg {
		_, err = mm.Fault(a, true)
		require.NoError(t, err)
	}
	require.NoError(t, mm.Unmap(addr+pg, pg))
	rec.take()
	require.ErrorIs(t, mm.Discard(addr, 3*pg), mmnotifier.ErrNoMem)
	for _, a := range []uint64{addr, addr + 2*pg} {
		_, ok := mm.Lookup(a)
		require.False(t, ok, "zapped")
	}

	rec.take()
	require.NoError(t, mm.Unmap(addr+pg, pg))
	require.Empty(t, rec.take(), "the hole ends where the next mapping starts")
}

// sleepyEnd is a notifier whose end callback may sleep.
type sleepyEnd struct{}

func (sleepyEnd) InvalidateRangeStart(*mmnotifier.Range) error { return nil }
func (sleepyEnd) InvalidateRangeEnd(*mmnotifier.Range)         { nonblock.MightSleep() }

// In a non-blockable range (the OOM reaper's) mn_hlist_invalidate_end
// runs each end callback inside a non_block_start section, as the starts:
// an end callback that may sleep there is reported; in a blockable range
// it is not.
func TestNonBlockableEndCallbacksMayNotSleep(t *testing.T) {
	rec := krulestest.Record(t)
	mm := newMM(t)
	s, err := mmnotifier.Register(mm, sleepyEnd{})
	require.NoError(t, err)
	defer s.Unregister()
	r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, mmnotifier.PageSize)
	mm.MmapLock().RLock()
	mmnotifier.InvalidateRangeStart(&r)
	mmnotifier.InvalidateRangeEnd(&r)
	require.Zero(t, rec.Len(), "blockable: it may sleep")
	r = mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, mmnotifier.PageSize)
	require.NoError(t, mmnotifier.InvalidateRangeStartNonblock(&r))
	mmnotifier.InvalidateRangeEnd(&r)
	mm.MmapLock().RUnlock()
	require.Len(t, rec.Kinds(), 1)
	require.Contains(t, rec.Last().Text, "sleepyEnd")
}

// The ends that mn_hlist_invalidate_range_start calls to unwind a refused
// non-blockable start run outside non-block sections, as in the kernel,
// which wraps only the starts: an end that may sleep there is not reported.
func TestUnwindingEndsRunOutsideNonBlockSections(t *testing.T) {
	krulestest.CaptureLog(t)
	rec := krulestest.Record(t)
	mm := newMM(t)
	sleepy := &mmnotifier.Funcs{End: func(*mmnotifier.Range) { nonblock.MightSleep() }}
	_, err := mmnotifier.Register(mm, sleepy.Notifier())
	require.NoError(t, err)
	refusing := &mmnotifier.Funcs{Start: func(*mmnotifier.Range) error { return mmnotifier.ErrAgain }}
	_, err = mmnotifier.Register(mm, refusing.Notifier())
	require.NoError(t, err)
	r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, mmnotifier.PageSize)
	mm.MmapLock().RLock()
	require.ErrorIs(t, mmnotifier.InvalidateRangeStartNonblock(&r), mmnotifier.ErrAgain)
	mm.MmapLock().RUnlock()
	require.Equal(t, mmnotifier.Counts{Starts: 1, Ends: 1}, sleepy.Counts(), "its start succeeded: its end unwinds it")
	require.Empty(t, rec.Kinds())
}

// uncomparableAlloc is an Allocator whose dynamic type cannot be compared
// (it holds a slice), so Get could not find its notifier again.
type uncomparableAlloc struct {
	made *int
	_    []int
}

func (a uncomparableAlloc) AllocNotifier(*mmnotifier.MM) (mmnotifier.Notifier, error) {
	*a.made++
	return (&mmnotifier.Funcs{}).Notifier(), nil
}

func (uncomparableAlloc) FreeNotifier(mmnotifier.Notifier) {}

// mmu_notifier_get finds its notifier by the ops pointer; Get finds it by
// comparing Allocators, so it refuses one it could not compare, before
// allocating, rather than panic on the second Get.
func TestGetRefusesAnUncomparableAllocator(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	made := 0
	sub, err := mmnotifier.Get(mm, uncomparableAlloc{made: &made})
	require.ErrorContains(t, err, "comparable")
	require.Nil(t, sub)
	require.Zero(t, made)
}

// __mmu_notifier_release ends with a grace period so that exit_mmap does not
// unmap and free the pages while a Release that mmu_notifier_unregister
// started is still running.
func TestExitWaitsForAReleaseThatUnregisterStarted(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	entered, leave := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	var rss atomic.Int64
	f := &mmnotifier.Funcs{Release: func(mm *mmnotifier.MM) {
		if calls.Add(1) != 1 {
			return // exit's own Release of the notifier
		}
		close(entered)
		<-leave
		rss.Store(mm.RSS()) // checked on the test's goroutine
	}}
	sub, err := mmnotifier.Register(mm, f.Notifier())
	require.NoError(t, err)
	mapTouched(t, mm, 1)
	unregistered := make(chan struct{})
	go func() {
		sub.Unregister()
		close(unregistered)
	}()
	<-entered
	exited := make(chan struct{})
	go func() {
		mm.Exit()
		close(exited)
	}()
	waited := true
	select {
	case <-exited:
		waited = false
	case <-time.After(50 * time.Millisecond):
	}
	close(leave)
	<-exited
	<-unregistered
	require.True(t, waited, "Exit did not wait for Unregister's Release")
	require.EqualValues(t, 1, rss.Load(), "the page was unmapped under the running Release")
	require.EqualValues(t, 2, calls.Load())
}

// mprotect invalidates what v6.12's change_pud_range does: for each
// 512 GiB PGDIR span of a piece, one MMU_NOTIFY_PROTECTION_VMA range from
// the first 1 GiB slot with page tables (clamped to the piece) to the end
// of the span in the piece; a span without page tables is not invalidated,
// and a page in the same slot but outside the piece populates the slot.
func TestProtectStartsAtTheFirstPopulatedPUD(t *testing.T) {
	krulestest.Check(t)
	const gib = 1 << 30
	mm, rec := recordedMM(t)
	starts := func() [][2]uint64 {
		var out [][2]uint64
		for _, c := range rec.take() {
			if c.what == "start" {
				require.Equal(t, mmnotifier.EventProtectionVMA, c.event)
				out = append(out, [2]uint64{c.start, c.end})
			}
		}
		return out
	}
	// 3 GiB from 4 GiB (a PUD boundary), one page touched in the middle
	// of the second GiB.
	addr, err := mm.Mmap(3*gib, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	require.Zero(t, addr%gib)
	_, err = mm.Fault(addr+gib+gib/2, true)
	require.NoError(t, err)
	rec.take()

	require.NoError(t, mm.Protect(addr, 3*gib, mmnotifier.ProtRead))
	require.Equal(t, [][2]uint64{{addr + gib, addr + 3*gib}}, starts(), "from the populated slot to the end")

	require.NoError(t, mm.Protect(addr+gib+pg, pg, mmnotifier.ProtReadWrite))
	require.Equal(t, [][2]uint64{{addr + gib + pg, addr + gib + 2*pg}}, starts(), "the slot is populated, the piece clamps")

	require.NoError(t, mm.Protect(addr+2*gib, gib, mmnotifier.ProtNone))
	require.Empty(t, starts(), "a slot without page tables")

	// A piece across a 512 GiB boundary, with pages on both sides: one
	// range for each span.
	const pgdir = 512 * gib
	big, err := mm.Mmap(pgdir+2*gib, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	cross := (big+gib)&^(pgdir-1) + pgdir
	require.Greater(t, cross, big)
	require.Less(t, cross, big+pgdir+2*gib)
	for _, a := range []uint64{cross - pg, cross + gib} {
		_, err = mm.Fault(a, true)
		require.NoError(t, err)
	}
	rec.take()
	end := big + pgdir + 2*gib
	require.NoError(t, mm.Protect(big, end-big, mmnotifier.ProtRead))
	require.Equal(t, [][2]uint64{
		{max(big, (cross-pg)&^(gib-1)), cross},
		{cross + gib, end},
	}, starts())
}
