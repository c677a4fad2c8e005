//go:build !krules_nolockdep

package lockclass_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// The cached tier for WWMutexes nested in a context (a reference counted in
// the top entry, as __lock_acquire with nest_lock) must keep what the slow
// path does.

func wwWarm(t *testing.T, n int) (*lockclass.WWClass, []lockclass.WWMutex) {
	krulestest.ResetDefault(t) // a report turns validation off, as debug_locks
	class := lockclass.NewWWClass("ww_merge")
	ms := make([]lockclass.WWMutex, n)
	for i := range ms {
		ms[i].Init(class)
	}
	var ctx lockclass.WWAcquireCtx
	ctx.Init(class)
	for i := range ms {
		require.NoError(t, ms[i].Lock(&ctx))
	}
	for i := range ms {
		ms[i].Unlock()
	}
	ctx.Fini()
	return class, ms
}

// lockBothIn locks ms[0] and ms[1] in a new context of class, declaring
// the context done between the two if doneBetween, and releases them.
func lockBothIn(t *testing.T, class *lockclass.WWClass, ms []lockclass.WWMutex, doneBetween bool) {
	var ctx lockclass.WWAcquireCtx
	ctx.Init(class)
	require.NoError(t, ms[0].Lock(&ctx))
	if doneBetween {
		ctx.Done()
	}
	require.NoError(t, ms[1].Lock(&ctx))
	ms[1].Unlock()
	ms[0].Unlock()
	ctx.Fini()
}

func TestWWNestedLockInANonBlockSectionMightSleepOnceEach(t *testing.T) {
	rec := krulestest.Record(t)
	class, ms := wwWarm(t, 3)
	require.Zero(t, rec.Len())

	var ctx lockclass.WWAcquireCtx
	nonblock.Start()
	ctx.Init(class)
	for i := range ms {
		require.NoError(t, ms[i].Lock(&ctx))
	}
	for i := range ms {
		ms[i].Unlock()
	}
	ctx.Fini()
	nonblock.End()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.SleepInAtomic, krules.SleepInAtomic}, rec.Kinds())
	require.Contains(t, rec.Reports()[0].Headline, "BUG: sleeping function called from invalid context at ")
	require.Nil(t, task.Lookup())
}

func TestWWNestedReferencesReleasedInAnyOrder(t *testing.T) {
	rec := krulestest.Record(t)
	class, ms := wwWarm(t, 4)

	var ctx lockclass.WWAcquireCtx
	ctx.Init(class)
	for i := range ms {
		require.NoError(t, ms[i].Lock(&ctx))
	}
	for _, i := range []int{0, 2, 1, 3} {
		ms[i].Unlock()
	}
	require.Zero(t, ctx.Acquired())
	ctx.Fini()
	require.Zero(t, rec.Len())
	require.Nil(t, task.Lookup(), "every reference and the context are released")

	ms[1].Unlock() // once more: nothing is held
	require.Equal(t, []krules.Kind{krules.BadUnlockBalance}, rec.Kinds())
}

// The misuses a cached Lock, Unlock, Done or Init could miss, each with the
// chains cached first (wwWarm), so that only the checks of the cached tiers
// stand between the misuse and its report.

func TestWWCachedContextOnAnotherGoroutineIsNotItsNestLock(t *testing.T) {
	class, ms := wwWarm(t, 2)
	rec := krulestest.Record(t)

	var ctx lockclass.WWAcquireCtx
	ctx.Init(class)
	require.NoError(t, ms[0].Lock(&ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		require.NoError(t, ms[1].Lock(&ctx))
		ms[1].Unlock()
	}()
	<-done
	ms[0].Unlock()
	ctx.Fini()
	require.Equal(t, []krules.Kind{krules.NestedLockNotTaken}, rec.Kinds())
	require.Nil(t, task.Lookup())
}

// ww_test_context_fini_early with the first lock pushed by the cached tier
// (pushNested): its entry names the context as its nest lock, so releasing
// the context below it re-acquires it under a nest lock no longer held, as
// lock_release's reacquire_held_locks does, before ww_acquire_fini warns
// of the lock still counted in the context.
func TestWWCachedPushKeepsItsNestLock(t *testing.T) {
	class, ms := wwWarm(t, 1)
	rec := krulestest.Record(t)

	var ctx lockclass.WWAcquireCtx
	ctx.Init(class)
	require.NoError(t, ms[0].Lock(&ctx))
	ctx.Fini()
	require.Equal(t, []krules.Kind{krules.NestedLockNotTaken, krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Reports()[0].Text, "but this task is not holding:\nww_merge_acquire\n")
	require.Contains(t, rec.Last().Text, "DEBUG_LOCKS_WARN_ON(ctx->acquired)")
	ms[0].Unlock()
	require.Len(t, rec.Reports(), 2)
	require.Nil(t, task.Lookup())
}

// The reference the foreign unlock could not drop stays in the merged entry
// of the goroutine that took both locks (__lock_release searches only
// current's held_locks), so that goroutine returns holding it. The test runs
// it on a goroutine of its own and reaps it before it ends: run on the test's
// goroutine, the entry outlived the test and was reported under whichever
// later test reaped it first (go test -shuffle).
func TestWWCachedUnlockOnAnotherGoroutineIsABadUnlock(t *testing.T) {
	class, ms := wwWarm(t, 2)
	rec := krulestest.Record(t)

	taker := make(chan struct{})
	go func() {
		defer close(taker)
		var ctx lockclass.WWAcquireCtx
		ctx.Init(class)
		require.NoError(t, ms[0].Lock(&ctx))
		require.NoError(t, ms[1].Lock(&ctx))
		done := make(chan struct{})
		go func() {
			defer close(done)
			ms[1].Unlock()
		}()
		<-done
		require.Equal(t, []krules.Kind{krules.BadUnlockBalance}, rec.Kinds())
		require.False(t, ms[1].IsLocked())
		require.Equal(t, 1, ctx.Acquired())
		ms[0].Unlock()
		ctx.Fini()
		require.Equal(t, 1, rec.Len())
	}()
	<-taker
	krulestest.VerifyNone(t)
	require.Equal(t, []krules.Kind{krules.BadUnlockBalance, krules.LocksHeldAtExit}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "1 lock held by ")
	require.Contains(t, rec.Last().Text, "(ww_merge_mutex){")
}

func TestWWCachedLockAfterDoneWarnsEachTime(t *testing.T) {
	class, ms := wwWarm(t, 2)
	rec := krulestest.Record(t)

	for range 2 {
		lockBothIn(t, class, ms, true)
	}
	require.Equal(t, []krules.Kind{krules.LockdepMisuse, krules.LockdepMisuse}, rec.Kinds())
	for _, r := range rec.Reports() {
		require.Contains(t, r.Text, "DEBUG_LOCKS_WARN_ON(ww_ctx->done_acquire)")
	}
	require.Nil(t, task.Lookup())
}

func TestWWCachedLockWithAContextOfAnotherClassWarnsEachTime(t *testing.T) {
	_, ms := wwWarm(t, 2)
	other := lockclass.NewWWClass("ww_other")
	rec := krulestest.Record(t)

	for range 3 {
		lockBothIn(t, other, ms, false)
	}
	require.Len(t, rec.Reports(), 6)
	for _, r := range rec.Reports() {
		require.Contains(t, r.Text, "DEBUG_LOCKS_WARN_ON(ww_ctx->ww_class != ww->ww_class)")
	}
	require.Nil(t, task.Lookup())
}

func TestWWCachedDoneOnAnotherGoroutineFindsNoContext(t *testing.T) {
	class, _ := wwWarm(t, 1)
	rec := krulestest.Record(t)

	var ctx lockclass.WWAcquireCtx
	ctx.Init(class)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx.Done()
	}()
	<-done
	ctx.Fini()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "lockdep_assert_held(ww_merge_acquire)")
}

func TestWWCachedSecondContextIsRecursive(t *testing.T) {
	class, _ := wwWarm(t, 1)
	rec := krulestest.Record(t)

	var a, b lockclass.WWAcquireCtx
	a.Init(class)
	b.Init(class)
	b.Fini()
	a.Fini()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "ww_merge_acquire")
	require.Nil(t, task.Lookup())
}

func TestWWCachedLocksAfterABackOffStayBalanced(t *testing.T) {
	class, ms := wwWarm(t, 3)
	rec := krulestest.Record(t)

	// Injected back-offs (ErrDeadlock with the others unlocked, LockSlow on
	// the contended one) come at growing intervals: run rounds until some
	// came, each balanced to the end.
	injected := 0
	for round := 0; injected < 3 && round < 50; round++ {
		var ctx lockclass.WWAcquireCtx
		ctx.Init(class, lockclass.InjectDeadlocks())
		var held []*lockclass.WWMutex
		for i := 0; i < len(ms); i++ {
			if err := ms[i].Lock(&ctx); err != nil {
				require.ErrorIs(t, err, lockclass.ErrDeadlock)
				injected++
				for _, m := range held {
					m.Unlock()
				}
				require.Zero(t, ctx.Acquired())
				ms[i].LockSlow(&ctx)
				held = append(held[:0], &ms[i])
				for j := range ms {
					if j != i {
						require.NoError(t, ms[j].Lock(&ctx))
						held = append(held, &ms[j])
					}
				}
				break
			}
			held = append(held, &ms[i])
		}
		require.Equal(t, len(ms), ctx.Acquired())
		ctx.Done()
		for _, m := range held {
			m.Unlock()
		}
		ctx.Fini()
		require.Nil(t, task.Lookup(), "round %d: every reference and the context are released", round)
	}
	require.Equal(t, 3, injected)
	require.Zero(t, rec.Len())
}
