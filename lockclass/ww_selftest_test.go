//go:build !krules_nolockdep

package lockclass_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// The ww_tests() group of lib/locking-selftest.c, one subtest per case,
// with the kernel's verdict: a FAILURE case must raise exactly the reports
// listed (kind and the DEBUG_LOCKS_WARN_ON condition), a SUCCESS case none.
// The selftest fakes a second task by poking o2.ctx; here a real goroutine
// holds the lock with an older context.

// wwFixture is the selftest's shared state: one wait-die class, the objects
// o, o2, o3 and the contexts t, t2.
type wwFixture struct {
	class     *lockclass.WWClass
	o, o2, o3 lockclass.WWMutex
	t, t2     lockclass.WWAcquireCtx
	a         lockclass.SpinLock
}

func newWWFixture(tb testing.TB) *wwFixture {
	krulestest.ResetDefault(tb)
	f := &wwFixture{class: lockclass.NewWDClass("ww_lockdep")}
	f.o.Init(f.class)
	f.o2.Init(f.class)
	f.o3.Init(f.class)
	f.a.Init(lockclass.WithName("lock_A"))
	return f
}

func TestWWSelftest(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, f *wwFixture) (cleanup func())
		want []wantReport
	}{
		// ww api failures
		{"ww_test_fail_acquire", func(t *testing.T, f *wwFixture) func() {
			f.t.Init(f.class)
			require.NoError(t, f.o.Lock(&f.t))
			require.ErrorIs(t, f.o.Lock(&f.t), lockclass.ErrAlready)
			require.False(t, f.o.TryLock(nil))
			// A younger context that holds a lock dies at once on o.
			errc := make(chan error)
			go func() {
				var t2 lockclass.WWAcquireCtx
				t2.Init(f.class)
				_ = f.o3.Lock(&t2)
				err := f.o.Lock(&t2)
				f.o3.Unlock()
				t2.Fini()
				errc <- err
			}()
			require.ErrorIs(t, <-errc, lockclass.ErrDeadlock)
			f.o.Unlock()
			require.True(t, f.o.TryLock(nil))
			f.o.Unlock()
			return func() { f.t.Fini() }
		}, nil},
		{"ww_test_normal", func(t *testing.T, f *wwFixture) func() {
			f.t.Init(f.class)
			require.NoError(t, f.o.Lock(nil))
			f.o.Unlock()
			require.True(t, f.o.TryLock(nil))
			f.o.Unlock()
			require.NoError(t, f.o.LockKillable(context.Background(), nil))
			f.o.Unlock()
			require.Zero(t, f.t.Acquired())
			return func() { f.t.Fini() }
		}, nil},
		{"ww_test_unneeded_slow", func(t *testing.T, f *wwFixture) func() {
			f.t.Init(f.class)
			f.o.LockSlow(&f.t)
			return func() { f.o.Unlock(); f.t.Fini() }
		}, []wantReport{misuse("!ctx->contending_lock")}},

		// ww contexts mixing
		{"ww_test_two_contexts", func(t *testing.T, f *wwFixture) func() {
			f.t.Init(f.class)
			f.t2.Init(f.class)
			return func() { f.t2.Fini(); f.t.Fini() }
		}, []wantReport{{krules.RecursiveLocking, "ww_lockdep_acquire"}}},
		{"ww_test_diff_class", func(t *testing.T, f *wwFixture) func() {
			f.t.Init(lockclass.NewWDClass("other"))
			require.NoError(t, f.o.Lock(&f.t))
			return func() { f.o.Unlock(); f.t.Fini() }
		}, []wantReport{misuse("ww_ctx->ww_class != ww->ww_class")}},

		// finishing ww context
		{"ww_test_context_done_twice", func(t *testing.T, f *wwFixture) func() {
			f.t.Init(f.class)
			f.t.Done()
			f.t.Done()
			f.t.Fini()
			return func() {}
		}, []wantReport{misuse("ctx->done_acquire")}},
		{"ww_test_context_unlock_twice", func(t *testing.T, f *wwFixture) func() {
			f.t.Init(f.class)
			f.t.Done()
			f.t.Fini()
			f.t.Fini()
			return func() {}
		}, []wantReport{kind(krules.BadUnlockBalance)}},
		{"ww_test_context_fini_early", func(t *testing.T, f *wwFixture) func() {
			f.t.Init(f.class)
			require.NoError(t, f.o.Lock(&f.t))
			f.t.Done()
			f.t.Fini()
			return func() { f.o.Unlock() }
		}, []wantReport{
			// Releasing the context re-acquires o above it, under a nest
			// lock no longer held, as the kernel's lock_release does.
			kind(krules.NestedLockNotTaken),
			misuse("ctx->acquired"),
		}},
		{"ww_test_context_lock_after_done", func(t *testing.T, f *wwFixture) func() {
			f.t.Init(f.class)
			f.t.Done()
			require.NoError(t, f.o.Lock(&f.t))
			return func() { f.o.Unlock(); f.t.Fini() }
		}, []wantReport{misuse("ww_ctx->done_acquire")}},

		// locking mismatches (lock_unbalanced and lock_stale_context poke
		// fields and live in ww_internal_test.go)
		{"ww_test_object_unlock_twice", func(t *testing.T, f *wwFixture) func() {
			require.NoError(t, f.o.Lock(nil))
			f.o.Unlock()
			f.o.Unlock()
			require.False(t, f.o.IsLocked())
			return func() {}
		}, []wantReport{kind(krules.BadUnlockBalance)}},

		// EDEADLK handling: o2 (and o3) held by an older context elsewhere
		{"ww_test_edeadlk_normal", func(t *testing.T, f *wwFixture) func() {
			rel := edeadlk(t, f, false)
			rel()
			f.o.Unlock()
			require.NoError(t, f.o2.Lock(&f.t))
			return func() { f.o2.Unlock(); f.t.Fini() }
		}, nil},
		{"ww_test_edeadlk_normal_slow", func(t *testing.T, f *wwFixture) func() {
			rel := edeadlk(t, f, false)
			rel()
			f.o.Unlock()
			f.o2.LockSlow(&f.t)
			return func() { f.o2.Unlock(); f.t.Fini() }
		}, nil},
		{"ww_test_edeadlk_no_unlock", func(t *testing.T, f *wwFixture) func() {
			rel := edeadlk(t, f, false)
			rel()
			require.NoError(t, f.o2.Lock(&f.t))
			return func() { f.o2.Unlock(); f.o.Unlock(); f.t.Fini() }
		}, []wantReport{misuse("ww_ctx->acquired > 0")}},
		{"ww_test_edeadlk_no_unlock_slow", func(t *testing.T, f *wwFixture) func() {
			rel := edeadlk(t, f, false)
			rel()
			f.o2.LockSlow(&f.t)
			return func() { f.o2.Unlock(); f.o.Unlock(); f.t.Fini() }
		}, []wantReport{misuse("ww_ctx->acquired > 0")}},
		{"ww_test_edeadlk_acquire_more", func(t *testing.T, f *wwFixture) func() {
			rel := edeadlk(t, f, false)
			require.NoError(t, f.o3.Lock(&f.t))
			return func() { f.o3.Unlock(); f.o.Unlock(); rel(); f.t.Fini() }
		}, []wantReport{misuse("ww_ctx->contending_lock != ww"), misuse("ww_ctx->acquired > 0")}},
		{"ww_test_edeadlk_acquire_more_slow", func(t *testing.T, f *wwFixture) func() {
			rel := edeadlk(t, f, false)
			f.o3.LockSlow(&f.t)
			return func() { f.o3.Unlock(); f.o.Unlock(); rel(); f.t.Fini() }
		}, []wantReport{misuse("ww_ctx->contending_lock != ww"), misuse("ww_ctx->acquired > 0")}},
		{"ww_test_edeadlk_acquire_more_edeadlk", func(t *testing.T, f *wwFixture) func() {
			rel := edeadlk(t, f, true)
			require.ErrorIs(t, f.o3.Lock(&f.t), lockclass.ErrDeadlock)
			return func() { f.o.Unlock(); rel(); f.t.Fini() }
		}, []wantReport{misuse("ww_ctx->contending_lock")}},
		{"ww_test_edeadlk_acquire_more_edeadlk_slow", func(t *testing.T, f *wwFixture) func() {
			rel := edeadlk(t, f, true)
			f.o3.LockSlow(&f.t) // still holds o: dies, and the result is dropped
			require.Equal(t, 1, f.t.Acquired(), "o3 is not held")
			return func() { f.o.Unlock(); rel(); f.t.Fini() }
		}, []wantReport{misuse("ww_ctx->contending_lock")}},
		{"ww_test_edeadlk_acquire_wrong", func(t *testing.T, f *wwFixture) func() {
			rel := edeadlk(t, f, false)
			f.o.Unlock()
			require.NoError(t, f.o3.Lock(&f.t))
			return func() { f.o3.Unlock(); rel(); f.t.Fini() }
		}, []wantReport{misuse("ww_ctx->contending_lock != ww")}},
		{"ww_test_edeadlk_acquire_wrong_slow", func(t *testing.T, f *wwFixture) func() {
			rel := edeadlk(t, f, false)
			f.o.Unlock()
			f.o3.LockSlow(&f.t)
			return func() { f.o3.Unlock(); rel(); f.t.Fini() }
		}, []wantReport{misuse("ww_ctx->contending_lock != ww")}},

		// spinlock nest unlocked
		{"ww_test_spin_nest_unlocked", func(t *testing.T, f *wwFixture) func() {
			f.a.LockNestLock(&f.o)
			return func() { f.a.Unlock() }
		}, []wantReport{kind(krules.NestedLockNotTaken)}},

		// |block|try|context| matrix
		{"ww_test_context_block", func(t *testing.T, f *wwFixture) func() {
			f.t.Init(f.class)
			require.NoError(t, f.o.Lock(&f.t))
			require.NoError(t, f.o2.Lock(nil))
			return func() { f.o2.Unlock(); f.o.Unlock(); f.t.Fini() }
		}, []wantReport{kind(krules.RecursiveLocking)}},
		{"ww_test_context_try", func(t *testing.T, f *wwFixture) func() {
			f.t.Init(f.class)
			require.NoError(t, f.o.Lock(&f.t))
			require.True(t, f.o2.TryLock(nil))
			f.o2.Unlock()
			f.o.Unlock()
			return func() { f.t.Fini() }
		}, nil},
		{"ww_test_context_context", func(t *testing.T, f *wwFixture) func() {
			f.t.Init(f.class)
			require.NoError(t, f.o.Lock(&f.t))
			require.NoError(t, f.o2.Lock(&f.t))
			f.o2.Unlock()
			f.o.Unlock()
			return func() { f.t.Fini() }
		}, nil},
		{"ww_test_try_block", func(t *testing.T, f *wwFixture) func() {
			require.True(t, f.o.TryLock(nil))
			require.NoError(t, f.o2.Lock(nil))
			return func() { f.o2.Unlock(); f.o.Unlock() }
		}, []wantReport{kind(krules.RecursiveLocking)}},
		{"ww_test_try_try", func(t *testing.T, f *wwFixture) func() {
			require.True(t, f.o.TryLock(nil))
			require.True(t, f.o2.TryLock(nil))
			f.o2.Unlock()
			f.o.Unlock()
			return func() {}
		}, nil},
		{"ww_test_try_context", func(t *testing.T, f *wwFixture) func() {
			require.True(t, f.o.TryLock(nil))
			f.t.Init(f.class)
			require.NoError(t, f.o2.Lock(&f.t))
			return func() { f.o2.Unlock(); f.t.Fini(); f.o.Unlock() }
		}, []wantReport{kind(krules.RecursiveLocking)}},
		{"ww_test_block_block", func(t *testing.T, f *wwFixture) func() {
			require.NoError(t, f.o.Lock(nil))
			require.NoError(t, f.o2.Lock(nil))
			return func() { f.o2.Unlock(); f.o.Unlock() }
		}, []wantReport{kind(krules.RecursiveLocking)}},
		{"ww_test_block_try", func(t *testing.T, f *wwFixture) func() {
			require.NoError(t, f.o.Lock(nil))
			require.True(t, f.o2.TryLock(nil))
			return func() { f.o2.Unlock(); f.o.Unlock() }
		}, nil},
		{"ww_test_block_context", func(t *testing.T, f *wwFixture) func() {
			require.NoError(t, f.o.Lock(nil))
			f.t.Init(f.class)
			require.NoError(t, f.o2.Lock(&f.t))
			return func() { f.o2.Unlock(); f.t.Fini(); f.o.Unlock() }
		}, []wantReport{kind(krules.RecursiveLocking)}},
		{"ww_test_spin_block", func(t *testing.T, f *wwFixture) func() {
			f.a.Lock()
			f.a.Unlock()
			require.NoError(t, f.o.Lock(nil))
			f.a.Lock()
			f.a.Unlock()
			f.o.Unlock()
			f.a.Lock()
			require.NoError(t, f.o.Lock(nil))
			return func() { f.o.Unlock(); f.a.Unlock() }
		}, []wantReport{kind(krules.SleepInAtomic), {krules.InvalidWaitContext, "ww_lockdep_mutex"}}},
		{"ww_test_spin_try", func(t *testing.T, f *wwFixture) func() {
			f.a.Lock()
			f.a.Unlock()
			require.True(t, f.o.TryLock(nil))
			f.a.Lock()
			f.a.Unlock()
			f.o.Unlock()
			f.a.Lock()
			require.True(t, f.o.TryLock(nil))
			f.o.Unlock()
			f.a.Unlock()
			return func() {}
		}, nil},
		{"ww_test_spin_context", func(t *testing.T, f *wwFixture) func() {
			f.a.Lock()
			f.a.Unlock()
			f.t.Init(f.class)
			require.NoError(t, f.o.Lock(&f.t))
			f.a.Lock()
			f.a.Unlock()
			f.o.Unlock()
			f.a.Lock()
			require.NoError(t, f.o.Lock(&f.t))
			return func() { f.o.Unlock(); f.a.Unlock(); f.t.Fini() }
		}, []wantReport{kind(krules.SleepInAtomic), {krules.InvalidWaitContext, "ww_lockdep_mutex"}}},
	}
	bothIDWays(t, func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				f := newWWFixture(t)
				rec := krulestest.Record(t)
				cleanup := c.run(t, f)
				requireReports(t, rec, c.want...)
				cleanup()
			})
		}
	})
}

// edeadlk sets up the EDEADLK cases: an older context on another goroutine
// holds o2 (and o3 if both), t locks o and gets ErrDeadlock on o2.
func edeadlk(t *testing.T, f *wwFixture, both bool) (release func()) {
	ms := []*lockclass.WWMutex{&f.o2}
	if both {
		ms = append(ms, &f.o3)
	}
	rel := olderHolder(t, f.class, ms...)
	f.t.Init(f.class)
	require.NoError(t, f.o.Lock(&f.t))
	require.ErrorIs(t, f.o2.Lock(&f.t), lockclass.ErrDeadlock)
	return rel
}

// ww_mutex_trylock runs ww_mutex_lock_acquired's checks
// (ww_mutex_set_context_fastpath) before its lockdep acquisition
// (mutex_acquire_nest), where ww_mutex_lock annotates first: a trylock
// with a context finished after Done warns of the done context before
// lockdep finds its nest lock not held.
func TestWWTryLockWarnsBeforeItsAcquisition(t *testing.T) {
	f := newWWFixture(t)
	rec := krulestest.Record(t)
	f.t.Init(f.class)
	f.t.Done()
	f.t.Fini()
	require.True(t, f.o.TryLock(&f.t))
	requireReports(t, rec, misuse("ww_ctx->done_acquire"), kind(krules.NestedLockNotTaken))
	rec.Clear()
	f.o.Unlock()
	requireReports(t, rec)
}

// ww_mutex_lock's might_sleep comes before __mutex_lock_common's -EALREADY:
// a lock the context already holds, taken again under a spin lock, is
// reported as sleeping in atomic context as well as answered ErrAlready.
func TestWWLockMightSleepBeforeItIsAlreadyHeld(t *testing.T) {
	f := newWWFixture(t)
	rec := krulestest.Record(t)
	f.t.Init(f.class)
	require.NoError(t, f.o.Lock(&f.t))
	f.a.Lock()
	require.ErrorIs(t, f.o.Lock(&f.t), lockclass.ErrAlready)
	f.a.Unlock()
	f.o.Unlock()
	f.t.Fini()
	requireReports(t, rec, kind(krules.SleepInAtomic))
}

// ww_mutex_lock_acquired warns at every lock after ww_acquire_done, also
// after a back-off: the lock that ends it (LockSlow) and each one after it.
func TestWWLocksAfterDoneInABackOffWarnEachTime(t *testing.T) {
	f := newWWFixture(t)
	rec := krulestest.Record(t)
	rel := edeadlk(t, f, false)
	rel()
	f.o.Unlock()
	f.t.Done()
	f.o2.LockSlow(&f.t)
	require.NoError(t, f.o.Lock(&f.t))
	require.NoError(t, f.o3.Lock(&f.t))
	f.o3.Unlock()
	f.o.Unlock()
	f.o2.Unlock()
	f.t.Fini()
	done := misuse("ww_ctx->done_acquire")
	requireReports(t, rec, done, done, done)
}

// ww_acquire_init initialises the context's lock map with the class it is
// given each time (lockdep_init_map): a context used before with another
// class is now of this one's "NAME_acquire".
func TestWWInitTakesTheNewClassKey(t *testing.T) {
	f := newWWFixture(t)
	rec := krulestest.Record(t)
	f.t.Init(lockclass.NewWDClass("ww_other"))
	f.t.Fini()
	f.t.Init(f.class)
	f.t2.Init(f.class)
	f.t2.Fini()
	f.t.Fini()
	requireReports(t, rec, wantReport{krules.RecursiveLocking, "ww_lockdep_acquire"})
}
