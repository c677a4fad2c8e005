package lockclass_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// kernel/locking/test-ww_mutex.c with real goroutines, for both
// algorithms; they run with validation compiled out too, whose Lock and
// Unlock have a way of their own. The lockdep side is in
// ww_lockdep_test.go.

func wwClasses() map[string]*lockclass.WWClass {
	return map[string]*lockclass.WWClass{
		"wound-wait": lockclass.NewWWClass("ww_class"),
		"wait-die":   lockclass.NewWDClass("wd_class"),
	}
}

func forEachWWClass(t *testing.T, fn func(t *testing.T, class *lockclass.WWClass)) {
	for name, class := range wwClasses() {
		t.Run(name, func(t *testing.T) {
			krulestest.ResetDefault(t)
			krulestest.Check(t)
			fn(t, class)
		})
	}
}

// test_mutex: mutual exclusion, with and without a context, and trylock.
func TestWWMutualExclusion(t *testing.T) {
	forEachWWClass(t, func(t *testing.T, class *lockclass.WWClass) {
		var m lockclass.WWMutex
		m.Init(class)
		var inside, total atomic.Int32
		var wg sync.WaitGroup
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 200 {
					var ctx lockclass.WWAcquireCtx
					switch (g + i) % 3 {
					case 0:
						ctx.Init(class)
						require.NoError(t, m.Lock(&ctx))
					case 1:
						require.NoError(t, m.Lock(nil))
					case 2:
						for !m.TryLock(nil) {
							time.Sleep(time.Microsecond)
						}
					}
					require.EqualValues(t, 1, inside.Add(1))
					total.Add(1)
					inside.Add(-1)
					m.Unlock()
					if (g+i)%3 == 0 {
						ctx.Fini()
					}
				}
			}()
		}
		wg.Wait()
		require.EqualValues(t, 6*200, total.Load())
		require.False(t, m.IsLocked())
	})
}

// test_aa: the context that holds a lock gets ErrAlready, trylocks fail.
func TestWWAA(t *testing.T) {
	forEachWWClass(t, func(t *testing.T, class *lockclass.WWClass) {
		var m lockclass.WWMutex
		m.Init(class)
		var ctx lockclass.WWAcquireCtx
		ctx.Init(class)
		require.NoError(t, m.Lock(&ctx))
		require.False(t, m.TryLock(nil))
		require.False(t, m.TryLock(&ctx))
		require.ErrorIs(t, m.Lock(&ctx), lockclass.ErrAlready)
		require.Equal(t, 1, ctx.Acquired())
		m.Unlock()
		ctx.Fini()
	})
}

// lockAll takes ms in order inside ctx, backing off on ErrDeadlock as the
// kernel's callers do: unlock everything, LockSlow the contended lock,
// start over with it held. It returns how many times it backed off.
func lockAll(ctx *lockclass.WWAcquireCtx, ms []*lockclass.WWMutex) int {
	backoffs := 0
	var contended *lockclass.WWMutex
	for {
		var held []*lockclass.WWMutex
		if contended != nil {
			held = append(held, contended)
		}
		var err error
		for _, m := range ms {
			if m == contended {
				continue
			}
			if err = m.Lock(ctx); err != nil {
				if !errors.Is(err, lockclass.ErrDeadlock) {
					panic(err)
				}
				for _, h := range held {
					h.Unlock()
				}
				contended = m
				m.LockSlow(ctx)
				backoffs++
				break
			}
			held = append(held, m)
		}
		if err == nil {
			return backoffs
		}
	}
}

// test_abba: two goroutines take A,B and B,A. Unresolved, one of them must
// see ErrDeadlock; resolved (backing off), both succeed.
func TestWWABBA(t *testing.T) {
	forEachWWClass(t, func(t *testing.T, class *lockclass.WWClass) {
		for _, resolve := range []bool{false, true} {
			for range 20 {
				var a, b lockclass.WWMutex
				a.Init(class)
				b.Init(class)
				var ready sync.WaitGroup
				ready.Add(2)
				errs := make(chan error, 2)
				worker := func(first, second *lockclass.WWMutex) {
					var ctx lockclass.WWAcquireCtx
					ctx.Init(class)
					defer ctx.Fini()
					if err := first.Lock(&ctx); err != nil {
						errs <- err
						return
					}
					ready.Done()
					ready.Wait()
					err := second.Lock(&ctx)
					if err != nil && resolve {
						first.Unlock()
						second.LockSlow(&ctx)
						err = first.Lock(&ctx)
					}
					if err == nil {
						second.Unlock()
					}
					first.Unlock()
					errs <- err
				}
				go worker(&a, &b)
				go worker(&b, &a)
				e1, e2 := <-errs, <-errs
				if resolve {
					require.NoError(t, e1)
					require.NoError(t, e2)
				} else {
					require.True(t, errors.Is(e1, lockclass.ErrDeadlock) || errors.Is(e2, lockclass.ErrDeadlock),
						"unresolved AB-BA must back one side off: %v, %v", e1, e2)
				}
			}
		}
	})
}

// test_cycle: n goroutines in a ring, each holds its lock and takes the
// next one's, resolving ErrDeadlock.
func TestWWCycle(t *testing.T) {
	forEachWWClass(t, func(t *testing.T, class *lockclass.WWClass) {
		for _, n := range []int{2, 3, 5, 8} {
			ms := make([]lockclass.WWMutex, n)
			for i := range ms {
				ms[i].Init(class)
			}
			var ready sync.WaitGroup
			ready.Add(n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					mine, next := &ms[i], &ms[(i+1)%n]
					var ctx lockclass.WWAcquireCtx
					ctx.Init(class)
					require.NoError(t, mine.Lock(&ctx))
					ready.Done()
					ready.Wait()
					if err := next.Lock(&ctx); err != nil {
						require.ErrorIs(t, err, lockclass.ErrDeadlock)
						mine.Unlock()
						next.LockSlow(&ctx)
						// Holding next, taking mine back can meet an older
						// context again: back off the same way.
						a, b := next, mine
						for err := b.Lock(&ctx); err != nil; err = b.Lock(&ctx) {
							require.ErrorIs(t, err, lockclass.ErrDeadlock)
							a.Unlock()
							b.LockSlow(&ctx)
							a, b = b, a
						}
					}
					next.Unlock()
					mine.Unlock()
					ctx.Fini()
				}()
			}
			wg.Wait()
		}
	})
}

// stress_inorder, stress_reorder, stress_one: workers over a shared array
// of locks, each taking a random subset in order, in random order, or one
// lock, checking mutual exclusion on every lock.
func TestWWStress(t *testing.T) {
	const nlocks, workers, rounds = 16, 8, 150
	for _, mode := range []string{"inorder", "reorder", "one"} {
		t.Run(mode, func(t *testing.T) {
			forEachWWClass(t, func(t *testing.T, class *lockclass.WWClass) {
				ms := make([]lockclass.WWMutex, nlocks)
				owner := make([]atomic.Int32, nlocks)
				for i := range ms {
					ms[i].Init(class)
				}
				var backoffs atomic.Int64
				var wg sync.WaitGroup
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						r := rand.New(rand.NewPCG(uint64(w), 7))
						for range rounds {
							idx := r.Perm(nlocks)[:1+r.IntN(6)]
							if mode == "one" {
								idx = idx[:1]
							}
							if mode == "inorder" {
								slicesSort(idx)
							}
							sel := make([]*lockclass.WWMutex, len(idx))
							for i, j := range idx {
								sel[i] = &ms[j]
							}
							var ctx lockclass.WWAcquireCtx
							ctx.Init(class)
							backoffs.Add(int64(lockAll(&ctx, sel)))
							ctx.Done()
							for _, j := range idx {
								require.True(t, owner[j].CompareAndSwap(0, int32(w+1)), "lock %d held twice", j)
							}
							for _, j := range idx {
								owner[j].Store(0)
							}
							for _, m := range sel {
								m.Unlock()
							}
							require.Zero(t, ctx.Acquired())
							ctx.Fini()
						}
					}()
				}
				wg.Wait()
				t.Logf("%d back-offs", backoffs.Load())
			})
		})
	}
}

func slicesSort(s []int) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// Wound-wait: an older context wounds a younger holder that is waiting for
// a third lock; the holder gets ErrDeadlock at once, backs off, and the
// older one gets the lock.
func TestWWWoundWaitingHolder(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	class := lockclass.NewWWClass("ww_class")
	var x, y lockclass.WWMutex
	x.Init(class)
	y.Init(class)
	var old lockclass.WWAcquireCtx
	old.Init(class) // older: stamped first
	require.NoError(t, y.Lock(&old))

	youngErr := make(chan error)
	youngHolds := make(chan struct{})
	go func() {
		var young lockclass.WWAcquireCtx
		young.Init(class)
		require.NoError(t, x.Lock(&young))
		close(youngHolds)
		err := y.Lock(&young) // waits for the older holder
		require.True(t, young.Wounded())
		x.Unlock()
		young.Fini()
		youngErr <- err
	}()
	<-youngHolds
	require.Eventually(t, func() bool { return y.IsLocked() }, time.Second, time.Millisecond)
	time.Sleep(5 * time.Millisecond) // let young queue on y
	require.NoError(t, x.Lock(&old)) // wounds young, waits for x
	require.ErrorIs(t, <-youngErr, lockclass.ErrDeadlock)
	x.Unlock()
	y.Unlock()
	old.Fini()
}

// Wound-wait: an older context wounds a younger holder that is running,
// not waiting (the class keeps the wound for it). The holder still takes a
// lock that need not wait; its next lock that has to wait gets ErrDeadlock
// at once; the wound is gone once it holds nothing.
func TestWWWoundRunningHolder(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	class := lockclass.NewWWClass("ww_class")
	var x, y, z, free lockclass.WWMutex
	for _, m := range []*lockclass.WWMutex{&x, &y, &z, &free} {
		m.Init(class)
	}
	ready, wound, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var old lockclass.WWAcquireCtx
		old.Init(class) // older: stamped before young
		require.NoError(t, y.Lock(&old))
		require.NoError(t, z.Lock(&old))
		close(ready)
		<-wound
		require.NoError(t, x.Lock(&old)) // wounds young, waits for x
		for _, m := range []*lockclass.WWMutex{&x, &y, &z} {
			m.Unlock()
		}
		old.Fini()
	}()
	<-ready
	var young lockclass.WWAcquireCtx
	young.Init(class)
	require.NoError(t, x.Lock(&young))
	require.False(t, young.Wounded())
	close(wound)
	require.Eventually(t, young.Wounded, time.Second, time.Millisecond)

	require.NoError(t, free.Lock(&young))
	require.ErrorIs(t, z.Lock(&young), lockclass.ErrDeadlock)
	free.Unlock()
	x.Unlock()
	require.Zero(t, young.Acquired())
	<-done
	z.LockSlow(&young)
	require.False(t, young.Wounded(), "reset at the first lock holding nothing")
	z.Unlock()
	young.Fini()
}

// Wait-die: a younger context with locks dies at once on a lock held by an
// older one; an older one waits for a younger holder.
func TestWWWaitDie(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	class := lockclass.NewWDClass("wd_class")
	var x, y lockclass.WWMutex
	x.Init(class)
	y.Init(class)
	var old lockclass.WWAcquireCtx
	old.Init(class)
	require.NoError(t, y.Lock(&old))
	done, youngHolds := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var young lockclass.WWAcquireCtx
		young.Init(class)
		require.NoError(t, x.Lock(&young))
		close(youngHolds)
		require.ErrorIs(t, y.Lock(&young), lockclass.ErrDeadlock)
		require.False(t, young.Wounded())
		x.Unlock()
		// Holding nothing, it waits instead of dying.
		y.LockSlow(&young)
		y.Unlock()
		young.Fini()
	}()
	<-youngHolds
	require.NoError(t, x.Lock(&old)) // waits until young backs off
	x.Unlock()
	y.Unlock()
	<-done
	old.Fini()
}

// A killable lock gives up when its context is done.
func TestWWKillable(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	class := lockclass.NewWWClass("ww_class")
	var m lockclass.WWMutex
	m.Init(class)
	require.NoError(t, m.Lock(nil))
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ctx lockclass.WWAcquireCtx
		ctx.Init(class)
		kctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, m.LockKillable(kctx, &ctx), context.DeadlineExceeded)
		require.Zero(t, ctx.Acquired())
		ctx.Fini()
	}()
	<-done
	m.Unlock()
	require.False(t, m.IsLocked())
}

// __mutex_lock_common tests a pending signal before __ww_mutex_check_kill:
// a killable lock whose context is done gives up with kctx.Err() even where
// its acquire context would back off (a younger one holding a lock, on a
// lock held by an older one, wait-die; or wounded, wound-wait), and leaves
// no contending lock behind, so that taking the lock again without backing
// off is no misuse.
func TestWWKillableIsKilledBeforeItBacksOff(t *testing.T) {
	forEachWWClass(t, func(t *testing.T, class *lockclass.WWClass) {
		var a, b lockclass.WWMutex
		a.Init(class)
		b.Init(class)
		holds, goOn, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			var old lockclass.WWAcquireCtx
			old.Init(class) // older: stamped before young
			require.NoError(t, b.Lock(&old))
			close(holds)
			<-goOn
			require.NoError(t, a.Lock(&old)) // wound-wait: wounds young; waits for a
			a.Unlock()
			b.Unlock()
			old.Fini()
		}()
		<-holds
		var young lockclass.WWAcquireCtx
		young.Init(class)
		require.NoError(t, a.Lock(&young))
		close(goOn)
		if !class.IsWaitDie() {
			require.Eventually(t, young.Wounded, 5*time.Second, time.Millisecond)
		}
		kctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.ErrorIs(t, b.LockKillable(kctx, &young), context.Canceled)
		require.Equal(t, 1, young.Acquired())
		a.Unlock()
		<-done
		require.NoError(t, b.Lock(&young))
		b.Unlock()
		young.Fini()
	})
}

// olderHolder locks ms on another goroutine with a context initialised
// before the caller's (so it is older) and keeps them until release is
// called.
func olderHolder(tb testing.TB, class *lockclass.WWClass, ms ...*lockclass.WWMutex) (release func()) {
	held, rel, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var ctx lockclass.WWAcquireCtx
		ctx.Init(class)
		for _, m := range ms {
			if err := m.Lock(&ctx); err != nil {
				panic(err)
			}
		}
		close(held)
		<-rel
		for _, m := range ms {
			m.Unlock()
		}
		ctx.Fini()
	}()
	<-held
	once := false
	release = func() {
		if !once {
			once = true
			close(rel)
			<-done
		}
	}
	tb.Cleanup(release)
	return release
}

type wantReport struct {
	kind krules.Kind
	text string // a substring of the report, "" for any
}

func misuse(cond string) wantReport {
	return wantReport{krules.LockdepMisuse, "DEBUG_LOCKS_WARN_ON(" + cond + ")"}
}

func kind(k krules.Kind) wantReport { return wantReport{kind: k} }

func requireReports(t *testing.T, rec *krulestest.Recorder, want ...wantReport) {
	t.Helper()
	reps := rec.Reports()
	var got []string
	for _, r := range reps {
		got = append(got, r.Kind.String()+": "+firstLines(r.Text))
	}
	require.Len(t, reps, len(want), "reports: %q", got)
	for i, w := range want {
		require.Equal(t, w.kind, reps[i].Kind, "report %d: %s", i, got[i])
		if w.text != "" {
			require.Contains(t, reps[i].Text, w.text)
		}
	}
}

func firstLines(s string) string {
	lines := strings.SplitN(s, "\n", 6)
	return strings.Join(lines[:min(len(lines), 5)], " | ")
}

// ww_mutex_lock_acquired's DEBUG_LOCKS_WARN_ONs hold in both builds, the
// compiled-out Lock's own way included: a lock after Done, one with a
// context of another class, one of another lock than the one that said
// EDEADLK.
func TestWWLockAcquiredWarnsInBothBuilds(t *testing.T) {
	krulestest.ResetDefault(t)
	class := lockclass.NewWDClass("wd_class")
	ms := wwMutexes(class, 3)
	o, o2, o3 := ms[0], ms[1], ms[2]
	t.Run("after Done", func(t *testing.T) {
		rec := krulestest.Record(t)
		var ctx lockclass.WWAcquireCtx
		ctx.Init(class)
		ctx.Done()
		require.NoError(t, o.Lock(&ctx))
		o.Unlock()
		ctx.Fini()
		requireReports(t, rec, misuse("ww_ctx->done_acquire"))
	})
	t.Run("another class", func(t *testing.T) {
		rec := krulestest.Record(t)
		var ctx lockclass.WWAcquireCtx
		ctx.Init(lockclass.NewWDClass("wd_other"))
		require.NoError(t, o.Lock(&ctx))
		o.Unlock()
		ctx.Fini()
		requireReports(t, rec, misuse("ww_ctx->ww_class != ww->ww_class"))
	})
	t.Run("another lock after EDEADLK", func(t *testing.T) {
		rec := krulestest.Record(t)
		release := olderHolder(t, class, o2)
		var ctx lockclass.WWAcquireCtx
		ctx.Init(class)
		require.NoError(t, o.Lock(&ctx))
		require.ErrorIs(t, o2.Lock(&ctx), lockclass.ErrDeadlock)
		o.Unlock()
		require.NoError(t, o3.Lock(&ctx))
		o3.Unlock()
		release()
		ctx.Fini()
		requireReports(t, rec, misuse("ww_ctx->contending_lock != ww"))
	})
	t.Run("unneeded killable slow", func(t *testing.T) {
		rec := krulestest.Record(t)
		var ctx lockclass.WWAcquireCtx
		ctx.Init(class)
		require.NoError(t, o.LockSlowKillable(context.Background(), &ctx))
		o.Unlock()
		ctx.Fini()
		requireReports(t, rec, misuse("!ctx->contending_lock"))
	})
}

// wwMutexes returns n initialised ww mutexes of class.
func wwMutexes(class *lockclass.WWClass, n int) []*lockclass.WWMutex {
	ms := make([]*lockclass.WWMutex, n)
	for i := range ms {
		ms[i] = new(lockclass.WWMutex)
		ms[i].Init(class)
	}
	return ms
}

// InjectDeadlocks makes the back-off path run without contention.
func TestWWInjectDeadlocks(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	class := lockclass.NewWWClass("ww_class")
	ms := wwMutexes(class, 8)
	total := 0
	for range 20 {
		var ctx lockclass.WWAcquireCtx
		ctx.Init(class, lockclass.InjectDeadlocks())
		total += lockAll(&ctx, ms)
		for _, m := range ms {
			m.Unlock()
		}
		ctx.Fini()
	}
	require.NotZero(t, total, "no -EDEADLK was injected")
}

// SetInjectDeadlocks is CONFIG_DEBUG_WW_MUTEX_SLOWPATH for a whole class:
// contexts initialised without the option get ErrDeadlock injected too,
// and once it is off again, none.
func TestWWClassInjectsDeadlocksIntoEveryContext(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	class := lockclass.NewWWClass("ww_class")
	ms := wwMutexes(class, 8)
	injected := func() int {
		total := 0
		for range 20 {
			var ctx lockclass.WWAcquireCtx
			ctx.Init(class)
			total += lockAll(&ctx, ms)
			for _, m := range ms {
				m.Unlock()
			}
			ctx.Fini()
		}
		return total
	}
	class.SetInjectDeadlocks(true)
	require.NotZero(t, injected(), "no -EDEADLK was injected")
	class.SetInjectDeadlocks(false)
	require.Zero(t, injected(), "nothing contends: no back-off without injection")
}

// ww_mutex_deadlock_injection: the first ErrDeadlock comes after stamp&0xf
// locks that count (taken while the context holds another), the next ones
// after 3, 10 and 35 more (the interval grows 3.5 times), each with the
// lock unlocked and left contending, so that LockSlow on it is no misuse.
func TestWWInjectDeadlocksAtGrowingIntervals(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	class := lockclass.NewWWClass("ww_class")
	ms := wwMutexes(class, 2)
	a, b := ms[0], ms[1]
	var ctx lockclass.WWAcquireCtx
	// A stamp with bit 3 set, so that all four of its low bits count.
	for ctx.Init(class, lockclass.InjectDeadlocks()); ctx.Stamp()&0x8 == 0; ctx.Init(class, lockclass.InjectDeadlocks()) {
		ctx.Fini()
	}
	require.NoError(t, a.Lock(&ctx))
	// locksBeforeInjected locks b while a is held until one is injected,
	// backs off, takes a again, and returns how many succeeded before.
	locksBeforeInjected := func() int {
		for n := 0; n < 100; n++ {
			err := b.Lock(&ctx)
			if err == nil {
				b.Unlock()
				continue
			}
			require.ErrorIs(t, err, lockclass.ErrDeadlock)
			require.False(t, b.IsLocked())
			require.Equal(t, 1, ctx.Acquired())
			a.Unlock()
			b.LockSlow(&ctx)
			b.Unlock()
			require.NoError(t, a.Lock(&ctx))
			return n
		}
		t.Fatal("no ErrDeadlock was injected in 100 locks")
		return 0
	}
	require.Equal(t, int(ctx.Stamp()&0xf), locksBeforeInjected())
	require.Equal(t, 3, locksBeforeInjected())
	require.Equal(t, 10, locksBeforeInjected())
	require.Equal(t, 35, locksBeforeInjected())
	a.Unlock()
	ctx.Fini()
}

// olderWaitsFor starts a goroutine whose context, stamped before the
// caller's next one, holds hold; once the returned wait is called it locks
// want (wound-wait: wounding a younger holder holding locks) and waits for
// it, then unlocks both and finishes. done is closed at the end.
func olderWaitsFor(t *testing.T, class *lockclass.WWClass, want, hold *lockclass.WWMutex) (wait func(), done chan struct{}) {
	ready, goOn := make(chan struct{}), make(chan struct{})
	done = make(chan struct{})
	go func() {
		defer close(done)
		var old lockclass.WWAcquireCtx
		old.Init(class)
		require.NoError(t, hold.Lock(&old))
		close(ready)
		<-goOn
		require.NoError(t, want.Lock(&old))
		want.Unlock()
		hold.Unlock()
		old.Fini()
	}()
	<-ready
	return func() { close(goOn) }, done
}

// A wound kept for a running holder (wound-wait) lasts while the holder
// takes no lock holding nothing: its next attempt's first lock (ww_mutex_lock
// clears ctx->wounded when ctx->acquired is 0), or Fini, drops it.
func TestWWWoundIsDroppedOnceTheHolderHoldsNothing(t *testing.T) {
	for _, end := range []string{"next attempt", "Fini"} {
		t.Run(end, func(t *testing.T) {
			krulestest.ResetDefault(t)
			krulestest.Check(t)
			class := lockclass.NewWWClass("ww_class")
			ms := wwMutexes(class, 2)
			x, y := ms[0], ms[1]
			wait, done := olderWaitsFor(t, class, x, y)
			var young lockclass.WWAcquireCtx
			young.Init(class)
			require.NoError(t, x.Lock(&young))
			wait()
			require.Eventually(t, young.Wounded, 5*time.Second, time.Millisecond)
			x.Unlock()
			<-done
			require.True(t, young.Wounded(), "kept until a lock is taken holding nothing")
			if end == "Fini" {
				young.Fini()
				require.False(t, young.Wounded())
				return
			}
			// x again, whose class its map has cached by now: the lock
			// takes the cached path.
			require.NoError(t, x.Lock(&young))
			require.False(t, young.Wounded())
			x.Unlock()
			young.Fini()
		})
	}
}
