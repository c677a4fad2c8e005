//go:build !krules_nolockdep

package lockclass

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
)

// The two "locking mismatches" cases of lib/locking-selftest.c that poke a
// field the API cannot reach.

// record runs fn on a fresh default validator and returns its reports
// (krulestest imports this package, so these tests cannot use it).
func record(t *testing.T, fn func()) []*krules.Report {
	t.Cleanup(Default().ResetWithRestore())
	return krules.Collect(fn)
}

func kinds(reps []*krules.Report) []krules.Kind {
	var ks []krules.Kind
	for _, r := range reps {
		ks = append(ks, r.Kind)
	}
	return ks
}

func TestWWObjectLockUnbalanced(t *testing.T) {
	class := NewWDClass("ww_lockdep")
	var o WWMutex
	o.Init(class)
	reps := record(t, func() {
		var ctx WWAcquireCtx
		ctx.Init(class)
		require.NoError(t, o.Lock(&ctx))
		ctx.acquired = 0 // t.acquired = 0
		o.Unlock()
		ctx.Fini()
	})
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, kinds(reps))
	require.True(t, strings.Contains(reps[0].Text, "DEBUG_LOCKS_WARN_ON(!lock->ctx->acquired)"))
	require.False(t, o.IsLocked())
}

// ww_test_object_lock_stale_context, and the same with a trylock, which
// takes the lock and warns of the stale context as ww_mutex_lock_acquired
// does.
func TestWWObjectLockStaleContext(t *testing.T) {
	for name, lock := range map[string]func(*WWMutex, *WWAcquireCtx) bool{
		"Lock":    func(m *WWMutex, c *WWAcquireCtx) bool { return m.Lock(c) == nil },
		"TryLock": (*WWMutex).TryLock,
	} {
		t.Run(name, func(t *testing.T) {
			class := NewWDClass("ww_lockdep")
			var o WWMutex
			o.Init(class)
			reps := record(t, func() {
				var ctx, t2 WWAcquireCtx
				ctx.Init(class)
				o.state.Store(wwWord(&t2, wwStale)) // o.ctx = &t2
				require.True(t, lock(&o, &ctx))
				o.Unlock()
				ctx.Fini()
			})
			require.Equal(t, []krules.Kind{krules.LockdepMisuse}, kinds(reps))
			require.Contains(t, reps[0].Text, "DEBUG_LOCKS_WARN_ON(ww->ctx)")
		})
	}
}

// waitersOn reports how many waiters m has queued.
func waitersOn(m *WWMutex) int {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	return len(m.wq)
}

// Wait-die (__ww_mutex_add_waiter, __ww_mutex_die, __ww_mutex_check_kill):
// an older context that queues ahead of a younger waiter holding locks
// tells it to die, and the younger one gets ErrDeadlock at once, while a
// third goroutine still holds the lock; otherwise the older one, once it
// has the lock, could wait for what the younger holds, and the younger
// would sleep on.
func TestWWOlderWaiterTellsAYoungerWaiterToDie(t *testing.T) {
	reps := record(t, func() {
		class := NewWDClass("wd_class")
		var l, x WWMutex
		l.Init(class)
		x.Init(class)
		require.NoError(t, l.Lock(nil)) // a holder without a context
		older, goOld, oldErr := olderContext(class, &l)
		<-older

		youngHolds, youngErr := youngerContext(class, &l, &x, (*WWMutex).Lock) // queues behind the holder
		<-youngHolds
		require.Eventually(t, func() bool { return waitersOn(&l) == 1 }, 5*time.Second, time.Millisecond)

		close(goOld) // queues ahead of the younger waiter
		select {
		case err := <-youngErr:
			require.ErrorIs(t, err, ErrDeadlock)
		case <-time.After(5 * time.Second):
			t.Fatal("the younger waiter was not told to die")
		}
		require.True(t, l.IsLocked(), "still the context-less holder's")
		l.Unlock() // hands l to the older context
		require.NoError(t, <-oldErr)
	})
	require.Empty(t, kinds(reps))
}

// olderContext starts a goroutine whose context is stamped, and holds
// hold, before older is closed and that, once goOld is closed, locks m in
// it, unlocks it and hold, finishes the context and sends Lock's error.
func olderContext(class *WWClass, m *WWMutex, hold ...*WWMutex) (older, goOld chan struct{}, err chan error) {
	older, goOld, err = make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		var c WWAcquireCtx
		c.Init(class)
		for _, h := range hold {
			if e := h.Lock(&c); e != nil {
				panic(e)
			}
		}
		close(older)
		<-goOld
		e := m.Lock(&c)
		if e == nil {
			m.Unlock()
		}
		for _, h := range hold {
			h.Unlock()
		}
		c.Fini()
		err <- e
	}()
	return older, goOld, err
}

// youngerContext starts a goroutine whose context is stamped after every
// context already started, and that locks hold in it, closes holds, then
// takes m with lock, unlocks m if it got it, unlocks hold, finishes the
// context and sends lock's error.
func youngerContext(class *WWClass, m, hold *WWMutex, lock func(*WWMutex, *WWAcquireCtx) error) (holds chan struct{}, err chan error) {
	holds, err = make(chan struct{}), make(chan error, 1)
	go func() {
		var c WWAcquireCtx
		c.Init(class)
		if e := hold.Lock(&c); e != nil {
			panic(e)
		}
		close(holds)
		e := lock(m, &c)
		if e == nil {
			m.Unlock()
		}
		hold.Unlock()
		c.Fini()
		err <- e
	}()
	return holds, err
}

// olderQueuedOn locks l without a context and queues an older context on
// it; the returned channel has that context's Lock error once l is handed
// to it.
func olderQueuedOn(t *testing.T, class *WWClass, l *WWMutex) chan error {
	require.NoError(t, l.Lock(nil))
	older, goOld, oldErr := olderContext(class, l)
	<-older
	close(goOld)
	require.Eventually(t, func() bool { return waitersOn(l) == 1 }, 5*time.Second, time.Millisecond)
	return oldErr
}

// Wound-wait (__ww_mutex_wound): an older context wounds a younger holder
// only while it holds locks itself; holding nothing, it cannot be part of a
// deadlock and just waits.
func TestWWOlderContextHoldingNothingDoesNotWound(t *testing.T) {
	reps := record(t, func() {
		class := NewWWClass("ww_class")
		var l WWMutex
		l.Init(class)
		older, goOld, oldErr := olderContext(class, &l)
		<-older
		var young WWAcquireCtx
		young.Init(class)
		require.NoError(t, l.Lock(&young))

		close(goOld)
		require.Eventually(t, func() bool { return waitersOn(&l) == 1 }, 5*time.Second, time.Millisecond)
		require.False(t, young.Wounded())
		l.Unlock()
		young.Fini()
		require.NoError(t, <-oldErr)
	})
	require.Empty(t, kinds(reps))
}

// twoInAContext returns two WWMutexes of class and an acquire context of
// it, initialised.
func twoInAContext(class *WWClass) (m, n *WWMutex, ctx *WWAcquireCtx) {
	m, n, ctx = new(WWMutex), new(WWMutex), new(WWAcquireCtx)
	m.Init(class)
	n.Init(class)
	ctx.Init(class)
	return m, n, ctx
}

// woundsKept reports what class's wwWounds keeps: wounds, waiters, and the
// pending count that lets every lock skip its lock.
func woundsKept(class *WWClass) [3]int {
	class.wounds.mu.Lock()
	defer class.wounds.mu.Unlock()
	return [3]int{len(class.wounds.wounded), len(class.wounds.waiting), int(class.wounds.pending.Load())}
}

// Wound-wait (__ww_mutex_wound of a running holder, known by its stamp):
// the class keeps the wound only until a wait of the holder takes it
// (__ww_mutex_check_kill then backs off), or the holder drops it, at the
// first lock of its next attempt or at Fini, and keeps a waiter only while
// it waits; afterwards pending, which lets every lock skip the class's
// lock, is zero again.
func TestWWClassKeepsAWoundUntilTakenOrDropped(t *testing.T) {
	for _, c := range []struct {
		name string
		end  func(t *testing.T, young *WWAcquireCtx, x, y, z *WWMutex, oldErr chan error)
	}{
		{"taken by a wait", func(t *testing.T, young *WWAcquireCtx, x, y, z *WWMutex, oldErr chan error) {
			require.ErrorIs(t, y.Lock(young), ErrDeadlock)
			require.Equal(t, [3]int{0, 1, 0}, woundsKept(young.class), "the older one still waits")
			x.Unlock()
			require.NoError(t, <-oldErr)
			young.Fini()
		}},
		{"dropped at the next attempt", func(t *testing.T, young *WWAcquireCtx, x, y, z *WWMutex, oldErr chan error) {
			x.Unlock()
			require.NoError(t, <-oldErr)
			require.Equal(t, [3]int{1, 0, 1}, woundsKept(young.class))
			require.NoError(t, z.Lock(young))
			require.Equal(t, [3]int{0, 0, 0}, woundsKept(young.class))
			z.Unlock()
			young.Fini()
		}},
		{"dropped at Fini", func(t *testing.T, young *WWAcquireCtx, x, y, z *WWMutex, oldErr chan error) {
			x.Unlock()
			require.NoError(t, <-oldErr)
			young.Fini()
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			reps := record(t, func() {
				class := NewWWClass("ww_class")
				var x, y, z WWMutex
				x.Init(class)
				y.Init(class)
				z.Init(class)
				older, goOld, oldErr := olderContext(class, &x, &y)
				<-older
				var young WWAcquireCtx
				young.Init(class)
				require.NoError(t, x.Lock(&young))
				close(goOld) // holding y, wounds young, which is running, and waits for x
				require.Eventually(t, func() bool { return woundsKept(class) == [3]int{1, 1, 1} }, 5*time.Second, time.Millisecond)
				c.end(t, &young, &x, &y, &z, oldErr)
				require.Equal(t, [3]int{0, 0, 0}, woundsKept(class))
			})
			require.Empty(t, kinds(reps))
		})
	}
}

// ww_acquire_init starts a context afresh, whatever its last life left in
// it: no lock counted, no wound (nor one the class kept for its old
// stamp), not done, no contending lock.
func TestWWInitStartsTheContextAfresh(t *testing.T) {
	reps := record(t, func() {
		class := NewWWClass("ww_class")
		var m, other WWMutex
		m.Init(class)
		var ctx WWAcquireCtx
		ctx.class, ctx.stamp = class, 1<<40
		class.wounds.wound(ctx.stamp)
		ctx.acquired, ctx.done, ctx.contending = 2, true, &other
		ctx.wounded.Store(true)

		ctx.Init(class)
		require.Zero(t, ctx.Acquired())
		require.False(t, ctx.Wounded())
		require.Equal(t, [3]int{0, 0, 0}, woundsKept(class))
		require.NoError(t, m.Lock(&ctx)) // neither done nor contending: no warning
		m.Unlock()
		ctx.Fini()
	})
	require.Empty(t, kinds(reps))
}

// __mutex_lock_common clears ctx->wounded at the first lock of an attempt
// (ctx->acquired 0), on Lock's cached path too: a wound that came with a
// lock (it was granted as it was wounded) is gone once the context holds
// nothing.
func TestWWFirstLockOfAnAttemptClearsTheWound(t *testing.T) {
	reps := record(t, func() {
		class := NewWWClass("ww_class")
		m, n, ctx := twoInAContext(class)
		require.NoError(t, m.Lock(ctx)) // caches m's class: the next lock takes the cached path
		m.Unlock()
		ctx.wounded.Store(true)
		require.NoError(t, m.Lock(ctx))
		require.False(t, ctx.Wounded())
		m.Unlock()
		// Merged into the entry of a lock of m's class taken without a
		// context (__lock_acquire merges a nest_lock acquisition on the
		// class alone), the first lock still clears it.
		ctx.wounded.Store(true)
		require.NoError(t, n.Lock(nil))
		require.NoError(t, m.Lock(ctx))
		require.False(t, ctx.Wounded())
		m.Unlock()
		n.Unlock()
		// And ww_mutex_trylock, as ww_mutex_lock.
		ctx.wounded.Store(true)
		require.True(t, m.TryLock(ctx))
		require.False(t, ctx.Wounded())
		m.Unlock()
		ctx.Fini()
	})
	require.Empty(t, kinds(reps))
}

// The first lock of an attempt pushes its entry above the context's: the
// slow path the first time, then pushCached, then, the chain remembered
// in the mutex's map, lockCached's quick tier. Each entry names the
// context as its nest lock (hlock->nest_lock, which reacquire_held_locks
// passes on), and the cached ones are the slow path's.
func TestWWFirstLockEntryNamesTheContextOnEveryTier(t *testing.T) {
	reps := record(t, func() {
		class := NewWWClass("ww_class")
		m, _, ctx := twoInAContext(class)
		var entries []task.HeldLock
		for range 3 {
			require.NoError(t, m.Lock(ctx))
			held := ctx.own.t.Lockdep.Held
			require.Len(t, held, 2)
			entries = append(entries, held[1])
			m.Unlock()
		}
		for _, e := range entries {
			require.Equal(t, unsafe.Pointer(&ctx.dep), e.NestLock)
			require.Equal(t, unsafe.Pointer(&m.dep), e.Instance)
			require.Equal(t, entries[0].Class, e.Class)
			require.Equal(t, entries[0].Site, e.Site)
			require.Equal(t, entries[0].PrevChainKey, e.PrevChainKey)
			require.Equal(t, [3]any{uint8(0), false, true}, [3]any{e.Read, e.Trylock, e.Check})
			require.Zero(t, e.References)
			require.NotNil(t, e.Label)
		}
		require.Len(t, ctx.own.t.Lockdep.Held, 1)
		ctx.Fini()
	})
	require.Empty(t, kinds(reps))
}

// While validation is off (SetEnabled(false)) a WWMutex is a plain lock:
// Lock's cached path tracks nothing in the context's goroutine record
// either.
func TestWWLockWithValidationOffTracksNothing(t *testing.T) {
	reps := record(t, func() {
		class := NewWWClass("ww_class")
		m, n, ctx := twoInAContext(class)
		require.NoError(t, m.Lock(ctx)) // caches the class
		require.NoError(t, n.Lock(ctx))
		n.Unlock()
		m.Unlock()
		held := len(ctx.own.t.Lockdep.Held) // the context's entry
		prev := SetEnabled(false)
		require.NoError(t, m.Lock(ctx))
		require.NoError(t, n.Lock(ctx))
		require.Len(t, ctx.own.t.Lockdep.Held, held)
		n.Unlock()
		m.Unlock()
		SetEnabled(prev)
		ctx.Fini()
	})
	require.Empty(t, kinds(reps))
}

// A class whose graph stopped validating (a report turned it off, as
// debug_locks_off does) tracks nothing more: Lock's merge leaves the top
// entry alone.
func TestWWLockOfAStoppedClassTracksNothing(t *testing.T) {
	reps := record(t, func() {
		class := NewWWClass("ww_class")
		m, n, ctx := twoInAContext(class)
		require.NoError(t, n.Lock(ctx)) // caches the class
		n.Unlock()
		require.NoError(t, m.Lock(ctx))
		held := ctx.own.t.Lockdep.Held
		top := &held[len(held)-1]
		refs := top.References
		m.dep.cache[0].Load().state.Or(stOff)
		require.NoError(t, n.Lock(ctx))
		require.Equal(t, refs, top.References)
		n.Unlock()
		m.Unlock()
		ctx.Fini()
	})
	require.Empty(t, kinds(reps))
}

// lock_acquire returns before anything else while current->lockdep_recursion
// is set (lockdep_off), nest_lock or not: inside Off a WWMutex locked in
// its context is neither pushed above the context's entry nor merged into
// the entry of its class on top, though the chain is cached for both of
// acquireNested's tiers, and its Unlock finds nothing to release.
func TestWWLockInsideLockdepOffTracksNothing(t *testing.T) {
	reps := record(t, func() {
		class := NewWWClass("ww_class")
		m, n, ctx := twoInAContext(class)
		require.NoError(t, m.Lock(ctx)) // caches the class in both maps, and the chains
		require.NoError(t, n.Lock(ctx))
		n.Unlock()
		m.Unlock()
		own := ctx.own.t
		require.Len(t, own.Lockdep.Held, 1) // the context's entry
		Off()
		require.NoError(t, m.Lock(ctx)) // the push: the context's entry on top
		require.Len(t, own.Lockdep.Held, 1)
		m.Unlock()
		On()
		require.Len(t, own.Lockdep.Held, 1)
		require.NoError(t, m.Lock(ctx)) // tracked, for the merge
		require.Len(t, own.Lockdep.Held, 2)
		refs := own.Lockdep.Held[1].References
		Off()
		require.NoError(t, n.Lock(ctx)) // the merge: an entry of n's class on top
		require.Equal(t, refs, own.Lockdep.Held[1].References)
		n.Unlock()
		On()
		require.Len(t, own.Lockdep.Held, 2)
		require.Equal(t, refs, own.Lockdep.Held[1].References)
		m.Unlock()
		require.Len(t, own.Lockdep.Held, 1)
		require.Zero(t, ctx.Acquired())
		ctx.Fini()
	})
	require.Empty(t, kinds(reps))
}

// __ww_mutex_add_waiter: a waiter with a context goes before the first
// waiter with a younger context, passing the context-less ones (they are
// skipped, not a barrier); a context-less waiter goes to the tail. Unlock
// hands the lock to the first waiter: the older context gets it first,
// then the younger one, then the context-less one that queued before the
// older.
func TestWWWaitersQueueInStampOrderContextLessAtTheTail(t *testing.T) {
	reps := record(t, func() {
		class := NewWDClass("wd_class")
		var m WWMutex
		m.Init(class)
		require.NoError(t, m.Lock(nil))
		var mu sync.Mutex
		var order []string
		var wg sync.WaitGroup
		// waiter starts a goroutine that, with a context stamped before it
		// returns if withCtx, locks m once goLock is closed and records its
		// name once it has it.
		waiter := func(name string, withCtx bool) (goLock chan struct{}) {
			stamped := make(chan struct{})
			goLock = make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				var c *WWAcquireCtx
				if withCtx {
					c = new(WWAcquireCtx)
					c.Init(class)
				}
				close(stamped)
				<-goLock
				if err := m.Lock(c); err != nil {
					panic(err)
				}
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				m.Unlock()
				if c != nil {
					c.Fini()
				}
			}()
			<-stamped
			return goLock
		}
		goOld := waiter("older", true)
		goYoung := waiter("younger", true)
		goPlain := waiter("context-less", false)
		for i, g := range []chan struct{}{goYoung, goPlain, goOld} {
			close(g)
			require.Eventually(t, func() bool { return waitersOn(&m) == i+1 }, 5*time.Second, time.Millisecond)
		}
		m.Unlock()
		wg.Wait()
		require.Equal(t, []string{"older", "younger", "context-less"}, order)
	})
	require.Empty(t, kinds(reps))
}

// __ww_mutex_add_waiter: only a wait-die context dies on finding an older
// one queued; a wound-wait one holding locks queues behind it and waits.
func TestWWWoundWaitQueuesBehindAnOlderWaiter(t *testing.T) {
	reps := record(t, func() {
		class := NewWWClass("ww_class")
		var l, x WWMutex
		l.Init(class)
		x.Init(class)
		oldErr := olderQueuedOn(t, class, &l)
		_, youngErr := youngerContext(class, &l, &x, (*WWMutex).Lock)
		require.Eventually(t, func() bool { return waitersOn(&l) == 2 }, 5*time.Second, time.Millisecond)
		l.Unlock()
		require.NoError(t, <-oldErr)
		require.NoError(t, <-youngErr)
	})
	require.Empty(t, kinds(reps))
}

// __ww_mutex_add_waiter kills a wait-die context holding locks that finds
// an older one queued before __mutex_lock_common's wait loop tests a
// signal: a killable lock whose context is done gets ErrDeadlock there,
// and the older waiter stays queued for the lock.
func TestWWWaitDieDiesOnQueueingBeforeItIsKilled(t *testing.T) {
	reps := record(t, func() {
		class := NewWDClass("wd_class")
		var l, x WWMutex
		l.Init(class)
		x.Init(class)
		oldErr := olderQueuedOn(t, class, &l)
		killed, cancel := context.WithCancel(context.Background())
		cancel()
		_, youngErr := youngerContext(class, &l, &x, func(m *WWMutex, c *WWAcquireCtx) error { return m.LockKillable(killed, c) })
		require.ErrorIs(t, <-youngErr, ErrDeadlock)
		l.Unlock() // hands l to the older waiter
		select {
		case err := <-oldErr:
			require.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Fatal("the older waiter was not handed the lock")
		}
	})
	require.Empty(t, kinds(reps))
}

// Wait-die never wounds (__ww_mutex_add_waiter wounds only for
// wound-wait): an older context holding locks that waits for a younger
// holder leaves it unwounded.
func TestWWWaitDieNeverWounds(t *testing.T) {
	reps := record(t, func() {
		class := NewWDClass("wd_class")
		var l, y WWMutex
		l.Init(class)
		y.Init(class)
		older, goOld, oldErr := olderContext(class, &l, &y)
		<-older
		var young WWAcquireCtx
		young.Init(class)
		require.NoError(t, l.Lock(&young))
		close(goOld)
		require.Eventually(t, func() bool { return waitersOn(&l) == 1 }, 5*time.Second, time.Millisecond)
		require.False(t, young.Wounded())
		l.Unlock()
		young.Fini()
		require.NoError(t, <-oldErr)
	})
	require.Empty(t, kinds(reps))
}

// ww_mutex_deadlock_injection counts its countdown down to zero, then
// injects and grows the interval by 3.5 (tmp*2 + tmp + tmp/2), and past
// UINT_MAX/4 sets it to UINT_MAX rather than let it wrap.
func TestWWInjectionIntervalGrowsAndStopsAtUintMax(t *testing.T) {
	const maxUint = 1<<32 - 1
	for _, tc := range []struct{ from, to uint64 }{
		{1, 3}, {3, 10}, {10, 35},
		{maxUint / 4, 3758096380}, // the largest that still grows
		{maxUint/4 + 1, maxUint},
	} {
		var m WWMutex
		c := &WWAcquireCtx{inject: true, interval: tc.from, countdown: 2}
		require.False(t, c.injectDeadlock(&m))
		require.False(t, c.injectDeadlock(&m))
		require.True(t, c.injectDeadlock(&m), "the countdown reached zero")
		require.Equal(t, tc.to, c.interval, "from %d", tc.from)
		require.Equal(t, tc.to, c.countdown)
		require.Same(t, &m, c.contending)
	}
}

// __ww_mutex_die returns true for every wait-die class, so
// __ww_mutex_check_waiters stops at the first waiter with a context, woken
// or not, and never wounds in a wait-die class. The queues the API builds
// never reach the difference (a younger waiter holding locks behind an
// older one dies as it queues, and the lock goes to the oldest waiter);
// these are built by hand.
func TestWaitDieCheckWaitersStopsAtTheFirstWaiterWithAContext(t *testing.T) {
	class := NewWDClass("ww_check_waiters")
	ctx := func(stamp int64, acquired int) *WWAcquireCtx {
		c := &WWAcquireCtx{class: class, stamp: stamp}
		c.acquired = int32(acquired)
		return c
	}
	waiter := func(c *WWAcquireCtx) *wwWaiter { return &wwWaiter{ctx: c, ch: make(chan struct{}, 1)} }
	woken := func(w *wwWaiter) bool {
		select {
		case <-w.ch:
			return true
		default:
			return false
		}
	}

	// The first waiter with a context holds nothing: not woken, and the
	// younger one behind it, holding a lock, is not looked at.
	var m WWMutex
	plain, idle, busy := &wwWaiter{ch: make(chan struct{}, 1)}, waiter(ctx(3, 0)), waiter(ctx(4, 1))
	m.wq = []*wwWaiter{plain, idle, busy}
	m.checkWaiters(ctx(2, 0))
	require.False(t, woken(plain), "a waiter without a context is passed over")
	require.False(t, woken(idle), "holding nothing, it need not die")
	require.False(t, woken(busy), "__ww_mutex_die returned true at the first")

	// The first waiter with a context is older and holds a lock: wait-die
	// never wounds the younger owner.
	owner := ctx(5, 0)
	older := waiter(ctx(1, 1))
	m.wq = []*wwWaiter{older}
	m.checkWaiters(owner)
	require.False(t, woken(older))
	require.False(t, owner.Wounded(), "no wounds in a wait-die class")
}
