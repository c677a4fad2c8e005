package lockclass_test

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// The classes of FuzzWWAgainstModel, one of each algorithm, made once: a
// class registers its keys for the life of the program, as a
// DEFINE_WW_CLASS is static.
var (
	fuzzWDClass = lockclass.NewWDClass("fuzz_wd")
	fuzzWWClass = lockclass.NewWWClass("fuzz_ww")
)

const (
	wwFuzzMutexes  = 4
	wwFuzzContexts = 3
	wwFree         = -1             // a mutex nobody holds
	wwNoCtx        = wwFuzzContexts // the holder without a context
)

// wwModelCtx is a struct ww_acquire_ctx as the model keeps it.
type wwModelCtx struct {
	inited, live bool // ww_acquire_init called; not finished since
	stamp        int64
	acquired     int
	done         bool
	contending   int // the mutex that said EDEADLK, or wwFree
	inject       bool
	countdown    uint64 // deadlock_inject_countdown
	interval     uint64 // deadlock_inject_interval
}

// wwModel is kernel/locking/ww_mutex.h and mutex.c for scripts in which
// nobody ever waits: a lock that would have to wait is not tried, so what
// is left is decided at once, as the kernel decides it. holder is, per
// mutex, the context holding it (its index), wwNoCtx or wwFree.
type wwModel struct {
	waitDie bool
	lockdep bool // validation on: compiled in and not yet turned off by a report
	ctx     [wwFuzzContexts]wwModelCtx
	holder  [wwFuzzMutexes]int
	reports []wwWant
}

// wwWant is a report the model expects: its kind and, for a
// DEBUG_LOCKS_WARN_ON, the condition.
type wwWant struct {
	kind krules.Kind
	cond string
}

func (m *wwModel) warn(cond string) {
	m.reports = append(m.reports, wwWant{krules.LockdepMisuse, cond})
}

// badUnlock is lockdep's "bad unlock balance detected!", after which
// lockdep is off (debug_locks_off), as after any lockdep report.
func (m *wwModel) badUnlock() {
	if m.lockdep {
		m.reports = append(m.reports, wwWant{kind: krules.BadUnlockBalance})
		m.lockdep = false
	}
}

// finiHolding is lockdep's side of ww_acquire_fini(c) while c holds
// locks: releasing the context's map re-acquires the mutexes above it
// (lock_release's reacquire_held_locks) under a nest lock no longer held,
// "Nested lock was not taken", and lockdep is off.
func (m *wwModel) finiHolding(c int) {
	if m.lockdep && m.holds(c) {
		m.reports = append(m.reports, wwWant{kind: krules.NestedLockNotTaken})
		m.lockdep = false
	}
}

// blocks reports whether ww_mutex_lock of mutex i with context c
// (wwNoCtx: none) would have to wait: i is held by another, and c may not
// die at once. Only a younger wait-die context that holds locks meeting
// an older holder dies without waiting (__ww_mutex_check_kill);
// wound-wait contexts wound, or are wounded, only while somebody waits.
func (m *wwModel) blocks(i, c int) bool {
	h := m.holder[i]
	if h == wwFree || h == c && c != wwNoCtx {
		return false
	}
	return !m.dies(i, c)
}

func (m *wwModel) dies(i, c int) bool {
	h := m.holder[i]
	if c == wwNoCtx || h == wwNoCtx || !m.waitDie || m.ctx[c].acquired == 0 {
		return false
	}
	return m.ctx[h].stamp < m.ctx[c].stamp
}

// acquired is ww_mutex_lock_acquired: the DEBUG_WW_MUTEXES checks, then
// the count.
func (m *wwModel) acquired(i, c int) {
	x := &m.ctx[c]
	if x.done {
		m.warn("ww_ctx->done_acquire")
	}
	if x.contending != wwFree {
		if x.contending != i {
			m.warn("ww_ctx->contending_lock != ww")
		}
		if x.acquired > 0 {
			m.warn("ww_ctx->acquired > 0")
		}
		x.contending = wwFree
	}
	x.acquired++
	m.holder[i] = c
}

// lock is ww_mutex_lock(i, c) where it does not wait: -EALREADY for c's
// own lock; a free lock taken, then ww_mutex_deadlock_injection
// (CONFIG_DEBUG_WW_MUTEX_SLOWPATH) once c holds more than one; or
// __ww_mutex_kill.
func (m *wwModel) lock(i, c int) error {
	if c == wwNoCtx {
		m.holder[i] = wwNoCtx
		return nil
	}
	x := &m.ctx[c]
	switch h := m.holder[i]; {
	case h == c:
		return lockclass.ErrAlready
	case h != wwFree:
		if x.contending != wwFree {
			m.warn("ww_ctx->contending_lock")
		}
		x.contending = i
		return lockclass.ErrDeadlock
	}
	m.acquired(i, c)
	if x.inject && x.acquired > 1 {
		if x.countdown > 0 {
			x.countdown--
			return nil
		}
		t := x.interval
		if t > math.MaxUint32/4 {
			t = math.MaxUint32
		} else {
			t = t*2 + t + t/2
		}
		x.interval, x.countdown, x.contending = t, t, i
		m.unlock(i)
		return lockclass.ErrDeadlock
	}
	return nil
}

// unlock is ww_mutex_unlock of a held mutex.
func (m *wwModel) unlock(i int) {
	if c := m.holder[i]; c != wwNoCtx {
		if m.ctx[c].acquired <= 0 {
			m.warn("!lock->ctx->acquired")
		} else {
			m.ctx[c].acquired--
		}
	}
	m.holder[i] = wwFree
}

// holds reports whether c (wwNoCtx: the holder without a context) holds a
// mutex.
func (m *wwModel) holds(c int) bool {
	for _, h := range m.holder {
		if h == c {
			return true
		}
	}
	return false
}

// wwWorker is a goroutine that runs what it is given, one call at a time,
// while the fuzz goroutine waits: each acquire context lives on its own
// (two contexts of one class on one goroutine are lockdep's recursive
// locking, ww_test_two_contexts), as does the holder without a context.
type wwWorker struct {
	run   chan func()
	done  chan struct{}
	stuck bool // a call did not return: the worker is left behind
}

func newWWWorker() *wwWorker {
	w := &wwWorker{run: make(chan func()), done: make(chan struct{})}
	go func() {
		for fn := range w.run {
			fn()
			w.done <- struct{}{}
		}
		close(w.done)
	}()
	return w
}

// do runs fn on the worker and waits for it, failing the test if it
// waits for a lock after all: the model tries only locks the kernel
// decides at once.
func (w *wwWorker) do(t *testing.T, fn func()) {
	w.run <- fn
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		w.stuck = true
		t.Fatal("a call the kernel decides at once is still waiting after 10s")
	}
}

func (w *wwWorker) stop() {
	if !w.stuck {
		close(w.run)
		<-w.done
	}
}

// FuzzWWAgainstModel drives four WWMutexes of one class (wait-die or
// wound-wait, the first byte says) with three acquire contexts and a
// holder without one, each on a goroutine of its own that runs one call at
// a time for the fuzz goroutine, which never lets anyone wait: a lock the
// model says would wait is not tried. The script inits contexts (some
// with deadlock injection), locks (Lock, LockKillable, LockSlow,
// LockSlowKillable), trylocks, unlocks (a free mutex too), marks contexts
// done, finishes them (twice too, and with locks held), and backs a
// context off as a caller does after ErrDeadlock. After every step it
// checks against wwModel each call's result, every mutex's holder
// (IsLocked, HeldBy), every context's stamp and count, and the reports:
// the DEBUG_LOCKS_WARN_ONs with their conditions, and lockdep's bad unlock
// balance while lockdep is on. Each byte after the first is one step: the
// low three bits the operation, the rest its argument.
func FuzzWWAgainstModel(f *testing.F) {
	const (
		opInit, opLock, opTry, opUnlock, opDone, opFini, opSlow, opBackOff = 0, 1, 2, 3, 4, 5, 6, 7
	)
	lock := func(m, c int) byte { return byte(opLock | (m|c<<2)<<3) }
	// wait-die: the younger context holding a lock dies on the older's,
	// backs off, and takes the contended lock slowly once it is free
	f.Add([]byte{1, opInit, opInit | 1<<3, lock(0, 0), lock(1, 1), lock(0, 1), lock(1, 0), opUnlock | 1<<3, opBackOff | 1<<3, opDone | 1<<3, opFini | 1<<3, opFini, opUnlock})
	// EALREADY, trylocks of held and free mutexes, the holder without a context
	f.Add([]byte{1, opInit, lock(2, 0), lock(2, 0), opTry | (2|1<<2)<<3, opTry | (3|3<<2)<<3, lock(1, 3), opTry | 1<<3, opUnlock | 3<<3, opUnlock | 1<<3, opUnlock | 2<<3, opFini})
	// misuse: lock after done, done twice, fini with a lock held, fini twice, unlock of a free mutex, slow lock without EDEADLK
	f.Add([]byte{0, opInit, opDone, opDone, lock(0, 0), opFini, opFini, opUnlock | 1<<3, opSlow | 2<<3, opUnlock})
	// EDEADLK ignored: another lock taken without backing off
	f.Add([]byte{1, opInit | 1<<3, opInit, lock(0, 1), lock(1, 0), lock(0, 0), lock(2, 0), lock(0, 0), opBackOff, opFini})
	// deadlock injection: contexts 0 and 1 with it (stamp & 0xf counts down first)
	f.Add([]byte{0, opInit | 3<<3, lock(0, 0), lock(1, 0), lock(2, 0), lock(3, 0), opBackOff, lock(1, 0), lock(2, 0), lock(3, 0), opBackOff, opFini, opInit | 4<<3, lock(0, 1), lock(1, 1), lock(2, 1), lock(3, 1), opBackOff | 1<<3})
	// an ordinary life, lockdep on throughout: locks, unlocks and locks again (their cached paths), done, fini, again
	round := []byte{opInit, lock(0, 0), lock(1, 0), lock(2, 0), lock(3, 0), opUnlock, opUnlock | 1<<3, lock(1, 0), lock(0, 0), opDone, opUnlock | 2<<3, opBackOff, opFini}
	f.Add(append([]byte{1}, slices.Repeat(round, 3)...))
	// injection at the kernel's growing intervals (3, 10, 35 locks): fourteen rounds of four locks and a back-off
	f.Add(append([]byte{1, opInit | 3<<3}, slices.Repeat([]byte{lock(0, 0), lock(1, 0), lock(2, 0), lock(3, 0), opBackOff}, 14)...))
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 200 {
			script = script[:200]
		}
		krulestest.ResetDefault(t) // a lockdep report turns it off
		rec := krulestest.Record(t)
		m := &wwModel{lockdep: lockclass.IsEnabled()}
		class := fuzzWWClass
		if len(script) > 0 {
			m.waitDie, script = script[0]&1 != 0, script[1:]
		}
		if m.waitDie {
			class = fuzzWDClass
		}
		var mus [wwFuzzMutexes]lockclass.WWMutex
		for i := range mus {
			mus[i].Init(class)
			m.holder[i] = wwFree
		}
		var ctxs [wwFuzzContexts]lockclass.WWAcquireCtx
		var workers [wwFuzzContexts + 1]*wwWorker // the last for the holder without a context
		for i := range workers {
			workers[i] = newWWWorker()
		}
		defer func() {
			for _, w := range workers {
				w.stop()
			}
		}()
		ctxOf := func(c int) *lockclass.WWAcquireCtx {
			if c == wwNoCtx {
				return nil
			}
			return &ctxs[c]
		}
		var lastStamp int64 // the stamp the last Init took, 0 before the first
		checked := 0        // reports compared already
		check := func(step int) {
			for i := range mus {
				h := m.holder[i]
				require.Equal(t, h != wwFree, mus[i].IsLocked(), "step %d: mutex %d", step, i)
				require.Equal(t, h == wwFree || h == wwNoCtx, mus[i].HeldBy(nil), "step %d: mutex %d", step, i)
				for c := range ctxs {
					if m.ctx[c].inited {
						require.Equal(t, h == c, mus[i].HeldBy(&ctxs[c]), "step %d: mutex %d, context %d", step, i, c)
					}
				}
			}
			for c := range ctxs {
				if m.ctx[c].inited {
					require.Equal(t, m.ctx[c].stamp, ctxs[c].Stamp(), "step %d: context %d", step, c)
					require.Equal(t, m.ctx[c].acquired, ctxs[c].Acquired(), "step %d: context %d", step, c)
					require.False(t, ctxs[c].Wounded(), "step %d: context %d: nobody waits, nobody is wounded", step, c)
				}
			}
			got := rec.Reports()
			require.Len(t, got, len(m.reports), "step %d: reports %v", step, rec.Kinds())
			for i := checked; i < len(got); i++ {
				require.Equal(t, m.reports[i].kind, got[i].Kind, "step %d: report %d", step, i)
				if m.reports[i].cond != "" {
					require.Contains(t, got[i].Text, "DEBUG_LOCKS_WARN_ON("+m.reports[i].cond+")", "step %d: report %d", step, i)
				}
			}
			checked = len(got)
		}
		// lockOp runs a lock of mutex i with context c the model says does
		// not wait, slow (ww_mutex_lock_slow) or not, killable or not.
		lockOp := func(step, i, c int, slow, killable bool) {
			x := ctxOf(c)
			var err error
			workers[c].do(t, func() {
				switch {
				case slow && killable:
					err = mus[i].LockSlowKillable(context.Background(), x)
				case slow:
					mus[i].LockSlow(x)
				case killable:
					err = mus[i].LockKillable(context.Background(), x)
				default:
					err = mus[i].Lock(x)
				}
			})
			if slow && c != wwNoCtx && m.ctx[c].contending == wwFree {
				m.warn("!ctx->contending_lock")
			}
			want := m.lock(i, c)
			if slow && !killable {
				return // ww_mutex_lock_slow drops the result
			}
			if want == nil {
				require.NoError(t, err, "step %d: lock %d with context %d", step, i, c)
			} else {
				require.ErrorIs(t, err, want, "step %d: lock %d with context %d", step, i, c)
			}
		}
		// usable reports whether context c (or none) may lock now: a
		// context between Init and Fini, or the holder without a context
		// while it holds nothing (two would be recursive locking).
		usable := func(c int) bool {
			if c == wwNoCtx {
				return !m.holds(wwNoCtx)
			}
			return m.ctx[c].live
		}

		for step, b := range script {
			op, arg := b&7, int(b>>3)
			i, c := arg&3, arg>>2&3 // a mutex and a context (wwNoCtx: none)
			switch op {
			case 0: // ww_acquire_init, if the context holds no lock of an earlier life
				c = arg % wwFuzzContexts
				x := &m.ctx[c]
				if x.live || m.holds(c) {
					break
				}
				inject := arg/wwFuzzContexts&1 != 0
				workers[c].do(t, func() {
					if inject {
						ctxs[c].Init(class, lockclass.InjectDeadlocks())
					} else {
						ctxs[c].Init(class)
					}
				})
				stamp := ctxs[c].Stamp()
				if lastStamp != 0 {
					require.Equal(t, lastStamp+1, stamp, "step %d: the class's next stamp", step)
				}
				lastStamp = stamp
				*x = wwModelCtx{inited: true, live: true, stamp: stamp, contending: wwFree,
					inject: inject, countdown: uint64(stamp) & 0xf, interval: 1}
			case 1:
				if !usable(c) || m.blocks(i, c) {
					break
				}
				lockOp(step, i, c, false, arg&16 != 0)
			case 2:
				if m.holder[i] == wwFree && !usable(c) || c != wwNoCtx && !m.ctx[c].live {
					break
				}
				var got bool
				workers[c].do(t, func() { got = mus[i].TryLock(ctxOf(c)) })
				want := m.holder[i] == wwFree
				if want {
					if c == wwNoCtx {
						m.holder[i] = wwNoCtx
					} else {
						m.acquired(i, c)
					}
				}
				require.Equal(t, want, got, "step %d: trylock %d with context %d", step, i, c)
			case 3:
				h := m.holder[i]
				if h == wwFree {
					workers[wwNoCtx].do(t, mus[i].Unlock)
					m.badUnlock()
					break
				}
				workers[h].do(t, mus[i].Unlock)
				m.unlock(i)
			case 4:
				c = arg % wwFuzzContexts
				x := &m.ctx[c]
				if !x.live {
					break
				}
				workers[c].do(t, ctxs[c].Done)
				if x.done {
					m.warn("ctx->done_acquire")
				}
				x.done = true
			case 5:
				c = arg % wwFuzzContexts
				x := &m.ctx[c]
				if !x.inited {
					break
				}
				workers[c].do(t, ctxs[c].Fini)
				if !x.live {
					m.badUnlock() // the context's map, released twice
				} else {
					m.finiHolding(c)
				}
				if x.acquired != 0 {
					m.warn("ctx->acquired")
				}
				x.live = false
			case 6:
				if c == wwNoCtx || !usable(c) || m.blocks(i, c) {
					break
				}
				lockOp(step, i, c, true, arg&16 != 0)
			case 7: // back off: unlock everything the context holds, then the contended lock, slowly
				c = arg % wwFuzzContexts
				x := &m.ctx[c]
				if !x.live {
					break
				}
				for i := range mus {
					if m.holder[i] == c {
						workers[c].do(t, mus[i].Unlock)
						m.unlock(i)
					}
				}
				if i := x.contending; i != wwFree && !m.blocks(i, c) {
					lockOp(step, i, c, true, false)
				}
			}
			check(step)
		}

		// Teardown: every mutex unlocked by its holder, every live context
		// finished, each as the model says.
		for i := range mus {
			if h := m.holder[i]; h != wwFree {
				workers[h].do(t, mus[i].Unlock)
				m.unlock(i)
			}
		}
		for c := range ctxs {
			if m.ctx[c].live {
				workers[c].do(t, ctxs[c].Fini)
				if m.ctx[c].acquired != 0 {
					m.warn("ctx->acquired")
				}
				m.ctx[c].live = false
			}
		}
		check(len(script))
	})
}
