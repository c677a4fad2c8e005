//go:build !krules_nolockdep

package lockclass_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

func keyed(v *lockclass.Validator, name string) []lockclass.Option {
	k := new(lockclass.Key)
	lockclass.RegisterKey(k) // a heap key, as lockdep_register_key wants
	return []lockclass.Option{lockclass.WithValidator(v), lockclass.WithKey(k), lockclass.WithName(name)}
}

// A mutex inside a spinlock_t: might_sleep's BUG first (mutex_lock calls
// might_sleep before mutex_acquire), then lockdep's wait-context BUG.
func TestMutexInsideSpinLockIsInvalidWaitContext(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	var s lockclass.SpinLock
	s.Init(keyed(v, "&dev->lock")...)
	m := mutex(v, "&dev->mutex")
	s.Lock()
	m.Lock()
	m.Unlock()
	s.Unlock()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.InvalidWaitContext}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "[ BUG: Invalid wait context ]", r.Headline)
	lines := strings.Split(r.Text, "\n")
	require.Equal(t, "=============================", lines[0])
	require.Equal(t, "[ BUG: Invalid wait context ]", lines[1])
	require.Equal(t, "-----------------------------", lines[3])
	require.Regexp(t, `^TestMutexInsideSpinLockIsInvalidWaitContext/\d+ is trying to lock:$`, lines[4])
	require.Regexp(t, `^[0-9a-f]{16} \(&dev->mutex\)\{\+\.\+\.\}-\{\d:\d\}, at: lockclass_test\.TestMutexInsideSpinLockIsInvalidWaitContext\+0x`, lines[5])
	require.Equal(t, "other info that might help us debug this:", lines[6])
	require.Equal(t, "context-{4:4}", lines[7], "LD_WAIT_MAX without PROVE_RAW_LOCK_NESTING")
	require.Regexp(t, `^1 lock held by TestMutexInsideSpinLockIsInvalidWaitContext/\d+:$`, lines[8])
	require.Regexp(t, `^ #0: [0-9a-f]{16} \(&dev->lock\)`, lines[9])
	require.Equal(t, "stack backtrace:", lines[10])

	// The first report turned validation off, as debug_locks_off does; the
	// locks keep working.
	s.Lock()
	s.Unlock()
}

func TestRWSemInsideRWLockIsInvalidWaitContext(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	var l lockclass.RWLock
	l.Init(keyed(v, "&tbl->lock")...)
	var s lockclass.RWSem
	s.Init(keyed(v, "&tbl->sem")...)
	l.RLock()
	s.RLock()
	s.RUnlock()
	l.RUnlock()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.InvalidWaitContext}, rec.Kinds())
}

// Spinning locks nest in each other in any order of wait type without
// PROVE_RAW_LOCK_NESTING, and a sleeping lock may hold a spinning one.
func TestValidWaitContexts(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	var raw lockclass.RawSpinLock
	raw.Init(keyed(v, "&rq->lock")...)
	var s lockclass.SpinLock
	s.Init(keyed(v, "&dev->lock")...)
	var rw lockclass.RWLock
	rw.Init(keyed(v, "&tbl->lock")...)
	m := mutex(v, "&dev->mutex")

	m.Lock()
	raw.Lock()
	s.Lock()
	rw.Lock()
	rw.Unlock()
	s.Unlock()
	raw.Unlock()
	m.Unlock()

	s.Lock()
	rw.RLock()
	rw.RUnlock()
	s.Unlock()
	require.Empty(t, rec.Kinds())
}

// With PROVE_RAW_LOCK_NESTING a spinlock_t (a sleeping lock on PREEMPT_RT)
// inside a raw_spinlock_t is reported; the braces then count LD_WAIT_CONFIG
// apart, and the context line prints LD_WAIT_MAX = 5.
func TestSpinLockInsideRawSpinLockWithProveRawLockNesting(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.ProveRawLockNesting())
	var raw lockclass.RawSpinLock
	raw.Init(keyed(v, "&rq->lock")...)
	var s lockclass.SpinLock
	s.Init(keyed(v, "&dev->lock")...)
	raw.Lock()
	s.Lock()
	s.Unlock()
	raw.Unlock()
	require.Equal(t, []krules.Kind{krules.InvalidWaitContext}, rec.Kinds())
	r := rec.Last()
	require.Contains(t, r.Text, "(&dev->lock)")
	require.Contains(t, r.Text, "\ncontext-{5:5}\n")
	require.Contains(t, r.Text, "(&rq->lock){+.+.}-{2:2}")
}

func TestSpinLockInsideRawSpinLockByDefault(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	var raw lockclass.RawSpinLock
	raw.Init(keyed(v, "&rq->lock")...)
	var s lockclass.SpinLock
	s.Init(keyed(v, "&dev->lock")...)
	var rw lockclass.RWLock
	rw.Init(keyed(v, "&tbl->lock")...)
	raw.Lock()
	s.Lock()
	rw.RLock()
	rw.RUnlock()
	s.Unlock()
	raw.Unlock()
	require.Empty(t, rec.Kinds())
}

// A trylock is never checked (check_wait_context returns early for it).
func TestTrylockSkipsWaitContext(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.ProveRawLockNesting())
	var raw lockclass.RawSpinLock
	raw.Init(keyed(v, "&rq->lock")...)
	var s lockclass.SpinLock
	s.Init(keyed(v, "&dev->lock")...)
	raw.Lock()
	require.True(t, s.TryLock())
	s.Unlock()
	raw.Unlock()
	require.Empty(t, rec.Kinds())
}

// The context is the strictest of every held lock's, not the innermost
// one's: a spinlock_t taken under a raw_spinlock_t is reported (with
// PROVE_RAW_LOCK_NESTING) even when a trylocked spinlock_t sits between
// them (check_wait_context takes the minimum over the held locks).
func TestWaitContextIsTheStrictestHeld(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator(lockclass.ProveRawLockNesting())
	var raw lockclass.RawSpinLock
	raw.Init(keyed(v, "&rq->lock")...)
	var a, b lockclass.SpinLock
	a.Init(keyed(v, "&a->lock")...)
	b.Init(keyed(v, "&b->lock")...)
	raw.Lock()
	require.True(t, a.TryLock())
	b.Lock()
	b.Unlock()
	a.Unlock()
	raw.Unlock()
	require.Equal(t, []krules.Kind{krules.InvalidWaitContext}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "(&b->lock)")
}

// check_wait_context runs on every acquisition, validated or not: a
// no-validate mutex (the device core's dev->mutex) keeps its wait type, so
// inside a spinlock_t it is an invalid wait context, though it is never
// ordered.
func TestNoValidateMutexInsideSpinLockIsInvalidWaitContext(t *testing.T) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	var s lockclass.SpinLock
	s.Init(keyed(v, "&dev->lock")...)
	m := new(lockclass.Mutex)
	m.Init(lockclass.WithValidator(v), lockclass.WithName("&dev->mutex"), lockclass.NoValidate())
	s.Lock()
	m.Lock()
	m.Unlock()
	s.Unlock()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.InvalidWaitContext}, rec.Kinds())
	require.Regexp(t, `(?m)^[0-9a-f]{16} \(&dev->mutex\)\{`, rec.Last().Text)
	require.Zero(t, v.Stats().Entries, "no dependency either way")
}

// __lock_acquire checks the wait context before anything else: before the
// nest lock must be held (a spinlock_t inside a raw_spinlock_t, with a nest
// lock not held, is an invalid wait context), and before validate_chain
// caches the chain (with the chain table full, the wait context is still
// what is reported).
func TestWaitContextIsCheckedFirst(t *testing.T) {
	for _, how := range []string{"nest lock not held", "chain table full"} {
		t.Run(how, func(t *testing.T) {
			rec := krulestest.Record(t)
			opts := []lockclass.ValidatorOption{lockclass.ProveRawLockNesting()}
			if how == "chain table full" {
				opts = append(opts, lockclass.WithLimits(lockclass.Limits{Chains: 1}))
			}
			v := lockclass.NewValidator(opts...)
			var r lockclass.RawSpinLock
			r.Init(keyed(v, "&rq->lock")...)
			var s, n lockclass.SpinLock
			s.Init(keyed(v, "&dev->lock")...)
			n.Init(keyed(v, "&dev->outer")...)
			r.Lock()
			if how == "nest lock not held" {
				s.LockNestLock(&n)
			} else {
				s.Lock()
			}
			s.Unlock()
			r.Unlock()
			require.Equal(t, []krules.Kind{krules.InvalidWaitContext}, rec.Kinds())
		})
	}
}
