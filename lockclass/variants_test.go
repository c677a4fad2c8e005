//go:build !krules_nolockdep

package lockclass_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// variant is one of the sleeping locks' _nested, _killable_nested or
// _nest_lock entry points, beside the plain entry point it refines, taken
// on a lock of the class "I".
type variant struct {
	name string
	// refined takes the lock with the subclass, killability or nest lock;
	// plain takes it without (subclass 0, no nest lock).
	refined, plain func(ctx context.Context) error
	unlock         func()
	// hold and unhold take and release the lock's write side.
	hold, unhold func()
	// killable: refined gives up when ctx is done; nestLock: refined
	// names a nest lock (else it names subclass 1).
	killable, nestLock bool
}

// sleepingVariants returns the variants of a Mutex and an RWSem of v in the
// class of key, named "I"; nest is the nest lock of the _nest_lock ones.
func sleepingVariants(v *lockclass.Validator, key *lockclass.Key, nest lockclass.Lockable) []variant {
	opts := []lockclass.Option{lockclass.WithValidator(v), lockclass.WithKey(key), lockclass.WithName("I")}
	m := new(lockclass.Mutex)
	m.Init(opts...)
	s := new(lockclass.RWSem)
	s.Init(opts...)
	lockM := func(context.Context) error { m.Lock(); return nil }
	lockS := func(context.Context) error { s.Lock(); return nil }
	vs := []variant{
		{name: "mutex_lock_killable_nested", killable: true,
			refined: func(ctx context.Context) error { return m.LockNestedKillable(ctx, 1) },
			plain:   m.LockKillable, unlock: m.Unlock},
		{name: "down_write_nested",
			refined: func(context.Context) error { s.LockNested(1); return nil },
			plain:   lockS, unlock: s.Unlock},
		{name: "down_write_killable_nested", killable: true,
			refined: func(ctx context.Context) error { return s.LockNestedKillable(ctx, 1) },
			plain:   s.LockKillable, unlock: s.Unlock},
		{name: "down_read_killable_nested", killable: true,
			refined: func(ctx context.Context) error { return s.RLockNestedKillable(ctx, 1) },
			plain:   s.RLockKillable, unlock: s.RUnlock},
		{name: "mutex_lock_nest_lock", nestLock: true,
			refined: func(context.Context) error { m.LockNestLock(nest); return nil },
			plain:   lockM, unlock: m.Unlock},
		{name: "down_write_nest_lock", nestLock: true,
			refined: func(context.Context) error { s.LockNestLock(nest); return nil },
			plain:   lockS, unlock: s.Unlock},
	}
	for i := range vs {
		if i == 0 || vs[i].name == "mutex_lock_nest_lock" {
			vs[i].hold, vs[i].unhold = m.Lock, m.Unlock
		} else {
			vs[i].hold, vs[i].unhold = s.Lock, s.Unlock
		}
	}
	return vs
}

// forEachVariant runs run, as a subtest, for each variant keep accepts,
// on a fresh validator, key and nest lock N.
func forEachVariant(t *testing.T, keep func(variant) bool, run func(t *testing.T, v *lockclass.Validator, key *lockclass.Key, nest *lockclass.Mutex, vr variant)) {
	for i, proto := range sleepingVariants(lockclass.NewValidator(), registeredKey(), nil) {
		if !keep(proto) {
			continue
		}
		t.Run(proto.name, func(t *testing.T) {
			v := lockclass.NewValidator()
			key := registeredKey()
			nest := mutex(v, "N")
			run(t, v, key, nest, sleepingVariants(v, key, nest)[i])
		})
	}
}

// A lock of class I taken under another lock of class I is recursive
// locking (check_deadlock), unless the inner acquisition is a subclass
// (another class: the *_nested variants) or names a nest lock that is held
// (check_deadlock's "OK via nest"). Each variant's refinement must take
// effect: the refined acquisition is quiet, the plain one is reported.
func TestNestedVariantsTellTheInnerLockApart(t *testing.T) {
	for _, refined := range []bool{true, false} {
		t.Run(map[bool]string{true: "refined", false: "plain"}[refined], func(t *testing.T) {
			forEachVariant(t, func(variant) bool { return true }, func(t *testing.T, v *lockclass.Validator, key *lockclass.Key, nest *lockclass.Mutex, vr variant) {
				rec := krulestest.Record(t)
				var outer lockclass.Mutex
				outer.Init(lockclass.WithValidator(v), lockclass.WithKey(key), lockclass.WithName("I"))
				nest.Lock()
				outer.Lock()
				take := vr.plain
				if refined {
					take = vr.refined
				}
				require.NoError(t, take(context.Background()))
				held := task.Lookup().Lockdep.Held
				depth, top := len(held), held[len(held)-1]
				inner := task.LabelOf(&top)
				vr.unlock()
				outer.Unlock()
				nest.Unlock()
				if !refined {
					require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
					return
				}
				require.Zero(t, rec.Len())
				if vr.nestLock {
					require.Equal(t, 2, depth, "merged into the held lock of its class")
					require.EqualValues(t, 2, top.References)
				} else {
					require.Equal(t, 3, depth)
					require.Contains(t, inner, "(I/1)", "the subclass is the inner lock's class")
				}
			})
		})
	}
}

// A nest lock must be held: taking a lock with a nest lock the task does
// not hold is "WARNING: Nested lock was not taken"
// (print_lock_nested_lock_not_held), naming the nest lock.
func TestNestLockVariantsWantTheNestLockHeld(t *testing.T) {
	forEachVariant(t, func(vr variant) bool { return vr.nestLock }, func(t *testing.T, _ *lockclass.Validator, _ *lockclass.Key, _ *lockclass.Mutex, vr variant) {
		rec := krulestest.Record(t)
		require.NoError(t, vr.refined(context.Background()))
		vr.unlock()
		require.Equal(t, []krules.Kind{krules.NestedLockNotTaken}, rec.Kinds())
		require.Equal(t, "WARNING: Nested lock was not taken", rec.Last().Headline)
		require.Contains(t, rec.Last().Text, "\nbut this task is not holding:\nN\n")
	})
}

// A killable acquisition that gives up returns ctx.Err(), annotates a
// release (mutex_lock_killable_nested and the down_*_killable_nested
// release on their failure paths), and leaves the lock to its holder: once
// the holder lets go, the lock is free, and taken even with the fatal
// signal still pending.
func TestKillableNestedVariantsGiveUpCleanly(t *testing.T) {
	forEachVariant(t, func(vr variant) bool { return vr.killable }, func(t *testing.T, v *lockclass.Validator, key *lockclass.Key, _ *lockclass.Mutex, vr variant) {
		krulestest.Check(t)
		var outer lockclass.Mutex
		outer.Init(lockclass.WithValidator(v), lockclass.WithKey(key), lockclass.WithName("I"))
		held, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			vr.hold()
			close(held)
			<-release
			vr.unhold()
		}()
		<-held
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		outer.Lock()
		require.ErrorIs(t, vr.refined(ctx), context.Canceled)
		require.Len(t, task.Lookup().Lockdep.Held, 1, "the failed acquisition is released")
		outer.Unlock()
		close(release)
		<-done
		// A free lock is taken before any look at the signal
		// (__mutex_lock_common's and the rwsem's trylock come first).
		require.NoError(t, vr.refined(ctx), "the lock is free again")
		vr.unlock()
	})
}
