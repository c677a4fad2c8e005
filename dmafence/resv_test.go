package dmafence_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

func collect(r *dmafence.Resv, u dmafence.Usage) map[*dmafence.Fence]dmafence.Usage {
	out := map[*dmafence.Fence]dmafence.Usage{}
	for f, fu := range r.Fences(u) {
		out[f] = fu
	}
	return out
}

func TestResvFences(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	r := dmafence.NewResv()
	tl := dmafence.ContextAlloc(4)
	k, w, rd, bk := dmafence.New(tl, 1), dmafence.New(tl+1, 1), dmafence.New(tl+2, 1), dmafence.New(tl+3, 1)

	require.NoError(t, r.Lock(nil))
	require.NoError(t, r.ReserveFences(4))
	r.AddFence(k, dmafence.UsageKernel)
	r.AddFence(w, dmafence.UsageWrite)
	r.AddFence(rd, dmafence.UsageRead)
	r.AddFence(bk, dmafence.UsageBookkeep)
	r.Unlock()

	require.Len(t, collect(r, dmafence.UsageKernel), 1)
	require.Len(t, collect(r, dmafence.UsageWrite), 2)
	require.Len(t, collect(r, dmafence.UsageRead), 3)
	all := collect(r, dmafence.UsageBookkeep)
	require.Equal(t, map[*dmafence.Fence]dmafence.Usage{k: dmafence.UsageKernel, w: dmafence.UsageWrite, rd: dmafence.UsageRead, bk: dmafence.UsageBookkeep}, all)

	require.False(t, r.TestSignaled(dmafence.UsageKernel))
	require.Zero(t, r.WaitTimeout(dmafence.UsageKernel, time.Millisecond))
	require.NoError(t, k.Signal())
	require.True(t, r.TestSignaled(dmafence.UsageKernel))
	// dma_resv_for_each_fence_unlocked passes over signalled fences, even
	// one signalled after the iteration began.
	require.Equal(t, map[*dmafence.Fence]dmafence.Usage{w: dmafence.UsageWrite, rd: dmafence.UsageRead, bk: dmafence.UsageBookkeep}, collect(r, dmafence.UsageBookkeep))
	var seen []*dmafence.Fence
	for f := range r.Fences(dmafence.UsageBookkeep) {
		if len(seen) == 0 {
			require.NoError(t, rd.Signal())
		}
		seen = append(seen, f)
	}
	require.Equal(t, []*dmafence.Fence{w, bk}, seen)
	require.Positive(t, r.WaitTimeout(dmafence.UsageKernel, time.Millisecond))
	require.False(t, r.TestSignaled(dmafence.UsageBookkeep))
	go func() {
		for _, f := range []*dmafence.Fence{w, bk} {
			time.Sleep(time.Millisecond)
			_ = f.Signal()
		}
	}()
	require.NoError(t, r.Wait(context.Background(), dmafence.UsageBookkeep))
	require.True(t, r.TestSignaled(dmafence.UsageBookkeep))
}

func TestResvReplace(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	r := dmafence.NewResv()
	tl := dmafence.ContextAlloc(1)
	f1, f2 := dmafence.New(tl, 1), dmafence.New(tl, 2)
	require.NoError(t, r.Lock(nil))
	require.NoError(t, r.ReserveFences(1))
	r.AddFence(f1, dmafence.UsageRead)
	r.AddFence(f2, dmafence.UsageWrite) // later on the timeline, stricter usage: replaces
	require.Equal(t, map[*dmafence.Fence]dmafence.Usage{f2: dmafence.UsageWrite}, collect(r, dmafence.UsageBookkeep))
	other := dmafence.New(dmafence.ContextAlloc(1), 1)
	require.NoError(t, f2.Signal())
	r.AddFence(other, dmafence.UsageBookkeep) // a signalled fence's slot is reused
	require.Equal(t, map[*dmafence.Fence]dmafence.Usage{other: dmafence.UsageBookkeep}, collect(r, dmafence.UsageBookkeep))
	require.Equal(t, []*dmafence.Fence{other}, dmafence.Listed(r), "f2's slot, not a new one")
	r.Unlock()
}

// A fence replaces another of its context only if it is not earlier on the
// timeline and its usage is the same or stricter (dma_resv_add_fence):
// otherwise both stay, so that neither a looser usage nor an older fence
// hides what the other waits for.
func TestResvKeepsWhatAReplacementWouldHide(t *testing.T) {
	for _, tc := range []struct {
		name               string
		oldSeq, newSeq     uint64
		oldUsage, newUsage dmafence.Usage
		replaced           bool
		seqno64            bool // New64: use_64bit_seqno
	}{
		{"later, stricter", 1, 2, dmafence.UsageRead, dmafence.UsageWrite, true, false},
		{"later, same usage", 1, 2, dmafence.UsageWrite, dmafence.UsageWrite, true, false},
		{"same fence again", 1, 1, dmafence.UsageWrite, dmafence.UsageWrite, true, false},
		{"another fence, same seqno", 4, 4, dmafence.UsageWrite, dmafence.UsageWrite, false, false},
		{"later, looser", 1, 2, dmafence.UsageKernel, dmafence.UsageBookkeep, false, false},
		{"earlier, same usage", 5, 3, dmafence.UsageWrite, dmafence.UsageWrite, false, false},
		{"later past the 32-bit wrap", 0xffffffff, 1, dmafence.UsageWrite, dmafence.UsageWrite, true, false},
		{"later by 1<<32, 32-bit", 0, 1 << 32, dmafence.UsageWrite, dmafence.UsageWrite, false, false},
		{"earlier past the 32-bit wrap, 64-bit", 0xffffffff, 1, dmafence.UsageWrite, dmafence.UsageWrite, false, true},
		{"later by 1<<32, 64-bit", 0, 1 << 32, dmafence.UsageWrite, dmafence.UsageWrite, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			krulestest.ResetDefault(t)
			krulestest.Check(t)
			r := dmafence.NewResv()
			tl := dmafence.ContextAlloc(1)
			newFence := dmafence.New
			if tc.seqno64 {
				newFence = dmafence.New64
			}
			old := newFence(tl, tc.oldSeq)
			add := newFence(tl, tc.newSeq)
			if tc.replaced && tc.newSeq == tc.oldSeq {
				add = old
			}
			require.NoError(t, r.Lock(nil))
			require.NoError(t, r.ReserveFences(2))
			r.AddFence(old, tc.oldUsage)
			r.AddFence(add, tc.newUsage)
			r.Unlock()
			want := map[*dmafence.Fence]dmafence.Usage{add: tc.newUsage}
			if !tc.replaced {
				want[old] = tc.oldUsage
			}
			require.Equal(t, want, collect(r, dmafence.UsageBookkeep))
		})
	}
}

func TestResvAddFenceWithoutReserve(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	r := dmafence.NewResv()
	require.NoError(t, r.Lock(nil))
	require.NoError(t, r.ReserveFences(3))
	r.AddFence(dmafence.New(dmafence.ContextAlloc(1), 1), dmafence.UsageWrite)
	r.Unlock() // unused room is given up
	require.Zero(t, rec.Len())

	require.NoError(t, r.Lock(nil))
	f := dmafence.New(dmafence.ContextAlloc(1), 1)
	r.AddFence(f, dmafence.UsageWrite)
	r.Unlock()
	require.Equal(t, []krules.Kind{krules.FenceMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "dma_resv_add_fence: no room reserved")
	require.Contains(t, collect(r, dmafence.UsageWrite), f, "added all the same")
}

func TestResvWrongClass(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	r := dmafence.NewResv()
	var ctx lockclass.WWAcquireCtx
	ctx.Init(lockclass.NewWWClass("other_ww_class"))
	require.NoError(t, r.Lock(&ctx))
	r.Unlock()
	ctx.Fini()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "DEBUG_LOCKS_WARN_ON(ww_ctx->ww_class != ww->ww_class)")
}

// Several reservation objects in one acquire context, in any order.
func TestResvLockMany(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	rs := []*dmafence.Resv{dmafence.NewResv(), dmafence.NewResv(), dmafence.NewResv()}
	var ctx lockclass.WWAcquireCtx
	ctx.Init(dmafence.ReservationClass)
	for _, i := range []int{2, 0, 1} {
		require.NoError(t, rs[i].Lock(&ctx))
	}
	ctx.Done()
	for _, r := range rs {
		r.AssertHeld()
		r.Unlock()
	}
	ctx.Fini()
}

// dma_resv_wait_timeout starts from timeout, or 1 for a poll, and returns
// what is left: with every fence of the usage signalled a poll returns 1,
// a wait without limit MAX_SCHEDULE_TIMEOUT, and the interruptible wait
// returns the interruption.
func TestResvWaitReturnsLikeDmaResvWaitTimeout(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	r := dmafence.NewResv()
	done, busy := dmafence.New(dmafence.ContextAlloc(1), 1), dmafence.New(dmafence.ContextAlloc(1), 1)
	require.NoError(t, done.Signal())
	require.NoError(t, r.Lock(nil))
	require.NoError(t, r.ReserveFences(2))
	r.AddFence(done, dmafence.UsageWrite)
	r.AddFence(busy, dmafence.UsageBookkeep)
	r.Unlock()
	require.Equal(t, time.Duration(1), r.WaitTimeout(dmafence.UsageRead, 0))
	require.Equal(t, dmafence.Forever, r.WaitTimeout(dmafence.UsageRead, dmafence.Forever))
	require.Equal(t, time.Duration(1), dmafence.NewResv().WaitTimeout(dmafence.UsageBookkeep, 0), "no fences at all")
	kctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, r.Wait(kctx, dmafence.UsageBookkeep), context.Canceled)
	require.NoError(t, r.Wait(kctx, dmafence.UsageRead), "nothing to wait for below BOOKKEEP")
}

// The usages print as enum dma_resv_usage's names without the prefix.
func TestUsageNames(t *testing.T) {
	var got []string
	for u := dmafence.UsageKernel; u <= dmafence.UsageBookkeep+1; u++ {
		got = append(got, u.String())
	}
	require.Equal(t, []string{"KERNEL", "WRITE", "READ", "BOOKKEEP", "Usage(4)"}, got)
}

// reservation_ww_class is wait-die (DEFINE_WD_CLASS in dma-resv.c): a
// younger context that holds a reservation and finds another held by an
// older context gets -EDEADLK at once, where under wound-wait it would
// wait (__ww_mutex_check_kill).
func TestReservationClassIsWaitDie(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	require.True(t, dmafence.ReservationClass.IsWaitDie())
	r, mine := dmafence.NewResv(), dmafence.NewResv()
	var older lockclass.WWAcquireCtx
	older.Init(dmafence.ReservationClass)
	require.NoError(t, r.Lock(&older))
	errc := make(chan error)
	go func() {
		var younger lockclass.WWAcquireCtx
		younger.Init(dmafence.ReservationClass)
		if err := mine.Lock(&younger); err != nil {
			errc <- err
			return
		}
		err := r.Lock(&younger)
		if err == nil {
			r.Unlock()
		}
		mine.Unlock()
		younger.Fini()
		errc <- err
	}()
	var err error
	select {
	case err = <-errc:
	case <-time.After(5 * time.Second):
		r.Unlock()
		t.Fatalf("the younger context waited for the older one: %v", <-errc)
	}
	require.ErrorIs(t, err, lockclass.ErrDeadlock)
	r.Unlock()
	older.Fini()
}

// dma_resv_reserve_fences counts in lists: a fresh object gets room for
// max(4, n rounded up to a power of two); a reservation the room left
// holds changes nothing; a larger one grows the room to max(fences + n,
// twice the room), and the copy leaves the signalled fences out.
func TestResvReserveFencesCountsAsTheKernel(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	r := dmafence.NewResv()
	add := func(n int) []*dmafence.Fence {
		var fs []*dmafence.Fence
		for range n {
			f := dmafence.New(dmafence.ContextAlloc(1), 1)
			r.AddFence(f, dmafence.UsageWrite)
			fs = append(fs, f)
		}
		return fs
	}
	require.NoError(t, r.Lock(nil))
	require.NoError(t, r.ReserveFences(1))
	first := add(4)
	require.Zero(t, rec.Len(), "one reserved on a fresh object makes room for 4")
	require.NoError(t, first[0].Signal())
	require.NoError(t, first[1].Signal())
	require.NoError(t, r.ReserveFences(1))
	require.Len(t, dmafence.Listed(r), 2, "growing drops the signalled fences")
	add(6)
	require.Zero(t, rec.Len(), "the room grew to twice 4")
	r.Unlock()

	fresh := dmafence.NewResv()
	require.NoError(t, fresh.Lock(nil))
	require.NoError(t, fresh.ReserveFences(5))
	r = fresh
	add(8)
	require.Zero(t, rec.Len(), "5 reserved make room for 8")
	fresh.Unlock()
}

// A reservation the room left holds, to the last slot, changes nothing:
// not even the signalled fences are dropped. One larger than twice the
// room grows the room to fences + n.
func TestResvReserveFencesWithinAndFarBeyondTheRoom(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	r := dmafence.NewResv()
	require.NoError(t, r.Lock(nil))
	require.NoError(t, r.ReserveFences(4))
	done := dmafence.New(dmafence.ContextAlloc(1), 1)
	r.AddFence(done, dmafence.UsageWrite)
	r.AddFence(dmafence.New(dmafence.ContextAlloc(1), 1), dmafence.UsageWrite)
	require.NoError(t, done.Signal())
	require.NoError(t, r.ReserveFences(2))
	require.Contains(t, dmafence.Listed(r), done, "2 more fit in 4: nothing is copied, nothing dropped")

	for range 3 { // the first takes the signalled fence's slot
		r.AddFence(dmafence.New(dmafence.ContextAlloc(1), 1), dmafence.UsageRead)
	}
	require.Zero(t, rec.Len())
	require.NoError(t, r.ReserveFences(12)) // 4 fences + 12 > 2 * 4
	for range 12 {
		r.AddFence(dmafence.New(dmafence.ContextAlloc(1), 1), dmafence.UsageRead)
	}
	require.Zero(t, rec.Len(), "room for fences + n")
	r.Unlock()
}

// dma_resv_lock_slow_interruptible: after backing off, the contended object
// is waited for until the caller is killed, and then taken once it is free.
func TestResvLockSlowKillable(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	a, b := dmafence.NewResv(), dmafence.NewResv()
	held, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() { // the older context, holding a
		defer close(done)
		var old lockclass.WWAcquireCtx
		old.Init(dmafence.ReservationClass)
		require.NoError(t, a.Lock(&old))
		close(held)
		<-release
		a.Unlock()
		old.Fini()
	}()
	<-held
	var ctx lockclass.WWAcquireCtx
	ctx.Init(dmafence.ReservationClass)
	require.NoError(t, b.Lock(&ctx))
	require.ErrorIs(t, a.Lock(&ctx), lockclass.ErrDeadlock, "younger and holding b: dies")
	b.Unlock()
	killed, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, a.LockSlowKillable(killed, &ctx), context.DeadlineExceeded)
	require.Zero(t, ctx.Acquired())
	close(release)
	require.NoError(t, a.LockSlowKillable(context.Background(), &ctx))
	a.AssertHeld()
	require.NoError(t, b.Lock(&ctx))
	ctx.Done()
	b.Unlock()
	a.Unlock()
	ctx.Fini()
	<-done
}

// The back-off of dma_resv users (drm_exec_lock_obj): a younger context
// that gets -EDEADLK from dma_resv_lock drops its reservations and takes
// the contended one with dma_resv_lock_slow, which waits for the older
// context and cannot fail; then it takes the rest again.
func TestResvLockSlowAfterBackOff(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	r, mine := dmafence.NewResv(), dmafence.NewResv()
	var older lockclass.WWAcquireCtx
	older.Init(dmafence.ReservationClass)
	require.NoError(t, r.Lock(&older))
	backedOff, slow, done := make(chan error, 1), make(chan struct{}), make(chan error, 1)
	go func() {
		var younger lockclass.WWAcquireCtx
		younger.Init(dmafence.ReservationClass)
		if err := mine.Lock(&younger); err != nil {
			backedOff <- err
			return
		}
		err := r.Lock(&younger)
		mine.Unlock()
		backedOff <- err
		r.LockSlow(&younger)
		close(slow)
		err = mine.Lock(&younger)
		if err == nil {
			younger.Done()
			mine.Unlock()
		}
		r.Unlock()
		younger.Fini()
		done <- err
	}()
	require.ErrorIs(t, <-backedOff, lockclass.ErrDeadlock)
	select {
	case <-slow:
		t.Fatal("dma_resv_lock_slow took the object from the older context")
	case <-time.After(10 * time.Millisecond):
	}
	r.Unlock()
	older.Fini()
	<-slow
	require.NoError(t, <-done)
}

// dma_resv_lock_interruptible gives up when interrupted, holding nothing
// and counting nothing in its context; dma_resv_trylock takes a free
// object only, without a context.
func TestResvLockKillableAndTryLock(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	r := dmafence.NewResv()
	held, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		if r.Lock(nil) == nil {
			close(held)
			<-release
			r.Unlock()
		}
	}()
	<-held
	require.False(t, r.TryLock(), "held by another")
	kctx, cancel := context.WithCancel(context.Background())
	cancel()
	var ctx lockclass.WWAcquireCtx
	ctx.Init(dmafence.ReservationClass)
	require.ErrorIs(t, r.LockKillable(kctx, &ctx), context.Canceled)
	require.Zero(t, ctx.Acquired())
	close(release)
	<-done
	require.True(t, r.TryLock(), "the interrupted wait left the object free")
	require.True(t, lockclass.IsHeld(r.WWMutex()))
	r.Unlock()
	require.NoError(t, r.LockKillable(context.Background(), &ctx))
	require.True(t, lockclass.IsHeld(r.WWMutex()))
	require.Equal(t, 1, ctx.Acquired())
	r.Unlock()
	ctx.Fini()
}
