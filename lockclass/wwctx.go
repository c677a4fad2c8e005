package lockclass

import (
	"math"
	"sync/atomic"
	"unsafe"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
)

// WWAcquireCtx is the kernel's struct ww_acquire_ctx: one attempt at
// locking a set of WWMutexes of one class, by one goroutine. Init gives it
// a stamp from the class (lower is older), Done says no more locks will be
// taken, Fini ends it. Between Init and Fini the context is itself "held"
// for lockdep, and every WWMutex locked with it nests under it (nest_lock),
// so any number of mutexes of the class may be held in any order; their
// ordering against other locks is validated as usual.
//
// The zero value is an uninitialised context; call Init. A context must not
// be copied, and belongs to the goroutine that called Init (lockdep reports
// a lock taken with it elsewhere: its nest lock is not held there).
type WWAcquireCtx struct {
	_     noCopy
	class *WWClass
	stamp int64
	// held is the state word of a WWMutex held in the context,
	// wwWord(c, wwHeld), kept from Init for Lock's cached path.
	held uint64
	// acquired counts the locks held through the context (ctx->acquired).
	// Only the owner writes it; others read it under a WWMutex's wait lock
	// while the owner is queued there, so it cannot change meanwhile.
	acquired int32
	// wounded is ctx->wounded (wound-wait: an older context wants a lock
	// we hold), set by a wounder that has the context; one that knows only
	// its stamp leaves the wound with the class (wwWounds), and the
	// context's next wait takes it.
	wounded atomic.Bool
	// waiting is the waiter the context's goroutine is blocked in, so that a
	// wounder can wake it to back off.
	waiting atomic.Pointer[wwWaiter]
	// Owner-only fields.
	done       bool     // ctx->done_acquire
	contending *WWMutex // ctx->contending_lock: the lock that said EDEADLK
	inject     bool     // DEBUG_WW_MUTEX_SLOWPATH
	countdown  uint64   // ctx->deadlock_inject_countdown
	interval   uint64   // ctx->deadlock_inject_interval
	// own is the goroutine whose stack has the context's entry, from Init
	// to Fini (id 0 when the validator does not follow it): a lock taken
	// with the context on that goroutine uses its record without a lookup.
	own owner
	// lockID is ^own.id while a Lock may take the cached path, which checks
	// nothing of what ww_mutex_lock_acquired warns about: before Done, not
	// backing off (contending), without injection. 0 otherwise, which no
	// goroutine id complements (task.GoID's 0, "unknown", included), so
	// that Lock needs one comparison; cached sets it whenever one of them
	// changes.
	lockID int64
	depth  int // where the context's entry was pushed on own's stack
	dep    Map
}

// WWCtxOption configures WWAcquireCtx.Init.
type WWCtxOption func(*WWAcquireCtx)

// InjectDeadlocks makes the context's locks fail with ErrDeadlock now and
// then even without contention, at growing intervals, as the kernel's
// CONFIG_DEBUG_WW_MUTEX_SLOWPATH (ww_mutex_deadlock_injection), so that a
// caller's back-off path runs in tests. WWClass.SetInjectDeadlocks does it
// for every context of a class.
func InjectDeadlocks() WWCtxOption { return func(c *WWAcquireCtx) { c.inject = true } }

// Init starts an acquire context of class: ww_acquire_init. It takes a new
// stamp and acquires the context's lock map (class "NAME_acquire"); two
// live contexts of one class on one goroutine are therefore reported as
// recursive locking. Deadlock injection is on if the class's
// SetInjectDeadlocks is, or with InjectDeadlocks.
//
//go:noinline
func (c *WWAcquireCtx) Init(class *WWClass, opts ...WWCtxOption) {
	id, pc := task.SiteID()
	if cl := c.class; cl != nil && cl.wounds.pending.Load() != 0 {
		cl.wounds.forget(c.stamp) // of a context that was not finished
	}
	c.class = class
	c.stamp = class.stamp.Add(1)
	c.held = wwWord(c, wwHeld)
	c.acquired = 0
	if c.wounded.Load() {
		c.wounded.Store(false)
	}
	c.done, c.contending, c.inject = false, nil, class.inject.Load()
	for _, o := range opts {
		o(c)
	}
	c.interval, c.countdown = 1, uint64(c.stamp)&0xf
	if cfg := c.dep.cfg.Load(); cfg == nil || cfg.key != &class.acquireKey {
		c.dep.init(pc, nil, []Option{WithKey(&class.acquireKey)})
	}
	// The cached path with the record found as Map.Acquire finds it
	// (ww_acquire_init is a plain lock_acquire, no might_sleep), and its
	// quick tier inline, as Map.Acquire has it, for a context initialised
	// again (its map remembers the chain): through a call the figure
	// WWMutex 8 in one ctx took 1828 instructions, inline 1814 (cachegrind,
	// AMD EPYC (Zen 3, KVM)). The id is not tested before ClaimHead, which
	// tests it (0, "unknown", heads no bucket): 1783 -> 1781.
	if compiledIn && enabled.Load() {
		if t := task.ClaimHead(id); t != nil {
			cl := c.dep.cache[0].Load()
			key, ok := quickKey(t, &c.dep, cl, 0, 0)
			if ok {
				pushQuick(t, &c.dep, cl, 0, pc, key)
				stampQuick(t)
			}
			if ok || pushCached(t, &c.dep, cl, 0, false, pc) {
				c.own.t, c.own.id, c.depth = t, id, len(t.Lockdep.Held)-1
				c.lockID = ^id // cached's, with done and contending just cleared
				if c.inject {
					c.lockID = 0
				}
				return
			}
		}
	}
	c.own = owner{}
	if t := acquire(&c.dep, 0, 0, 0, nil, pc, nil); t != nil {
		c.own.set(t)
		c.depth = len(t.Lockdep.Held) - 1
	}
	c.cached()
}

// cached sets lockID after a change of own, done, contending or inject.
func (c *WWAcquireCtx) cached() {
	c.lockID = 0
	if !c.done && c.contending == nil && !c.inject && c.own.id != 0 {
		c.lockID = ^c.own.id
	}
}

// resetWound clears the wound at the first lock of an attempt (after a
// back-off too): a context that holds nothing cannot be part of a deadlock.
// It stores only when the flag is set, which is the same as storing always
// (a wound racing with it lands before or after) without a full-barrier
// exchange on every attempt. Lock spells the test out inline.
func (c *WWAcquireCtx) resetWound() {
	if c.acquired == 0 {
		if c.wounded.Load() {
			c.wounded.Store(false)
		}
		c.forgetWound()
	}
}

// forgetWound drops a wound the class keeps for the context (wwWounds).
// Init and Fini spell the test out inline.
func (c *WWAcquireCtx) forgetWound() {
	if cl := c.class; cl != nil && cl.wounds.pending.Load() != 0 {
		cl.wounds.forget(c.stamp)
	}
}

// woundNow is __ww_mutex_wound's mark on a context at hand: it backs off at
// its next lock that has to wait, at once if it is waiting.
func (c *WWAcquireCtx) woundNow() {
	c.wounded.Store(true)
	if w := c.waiting.Load(); w != nil {
		wake(w)
	}
}

// Done marks the end of the acquire phase: ww_acquire_done. Locking with
// the context afterwards is a DEBUG_LOCKS_WARN_ON, as is calling Done
// twice.
func (c *WWAcquireCtx) Done() {
	// AssertHeld's cached path: the context's entry is where Init pushed it
	// on the stack of the goroutine that initialised the context, and that
	// is the caller.
	if id := task.GoID(); id == 0 || id != c.own.id {
		AssertHeld(&c.dep)
	} else if held := c.own.t.Lockdep.Held; uint(c.depth) >= uint(len(held)) || held[c.depth].Instance != unsafe.Pointer(&c.dep) {
		AssertHeld(&c.dep)
	}
	if c.done {
		debugLocksWarn("ctx->done_acquire")
	}
	c.done = true
	c.lockID = 0
}

// Fini ends the context: ww_acquire_fini. It releases the context's lock
// map (a second Fini is a bad unlock balance) and warns if locks are still
// held through the context.
func (c *WWAcquireCtx) Fini() {
	if id := task.GoID(); id == 0 || id != c.own.id {
		releaseShared(&c.dep)
	} else if t := c.own.t; popTop(t, &c.dep) {
		t.ReleaseIfEmpty()
	} else {
		releaseShared(&c.dep)
	}
	c.own.id, c.lockID = 0, 0
	if cl := c.class; cl != nil && cl.wounds.pending.Load() != 0 {
		cl.wounds.forget(c.stamp)
	}
	if c.acquired != 0 {
		debugLocksWarn("ctx->acquired")
	}
	// As with CONFIG_PROVE_LOCKING, done_acquire is left alone: a later
	// lock with the stale context is reported by lockdep, its nest lock
	// (the context) not being held.
}

// Stamp returns the context's stamp; a lower stamp is an older context.
func (c *WWAcquireCtx) Stamp() int64 { return c.stamp }

// Class returns the context's class.
func (c *WWAcquireCtx) Class() *WWClass { return c.class }

// Acquired returns how many locks are held through the context.
func (c *WWAcquireCtx) Acquired() int { return int(c.acquired) }

// Wounded reports whether an older context has wounded this one
// (wound-wait): its next lock that has to wait returns ErrDeadlock.
func (c *WWAcquireCtx) Wounded() bool {
	return c.wounded.Load() || c.class != nil && c.class.wounds.has(c.stamp)
}

func (c *WWAcquireCtx) lockdepMap() *Map { return &c.dep }

// younger is !__ww_ctx_less's mirror: c took its stamp after o.
func (c *WWAcquireCtx) younger(o *WWAcquireCtx) bool { return c.stamp > o.stamp }

// lockAcquired runs the checks of ww_mutex_lock_acquired once m is taken
// with c, and counts it.
func (c *WWAcquireCtx) lockAcquired(m *WWMutex) {
	if c.done {
		debugLocksWarn("ww_ctx->done_acquire")
	}
	if c.contending != nil {
		if c.contending != m {
			debugLocksWarn("ww_ctx->contending_lock != ww")
		}
		if c.acquired > 0 {
			debugLocksWarn("ww_ctx->acquired > 0")
		}
		c.contending = nil
		c.cached()
	}
	if m.class != c.class {
		debugLocksWarn("ww_ctx->ww_class != ww->ww_class")
	}
	c.acquired++
}

// kill is __ww_mutex_kill: back off from m.
func (c *WWAcquireCtx) kill(m *WWMutex) error {
	if c.contending != nil {
		debugLocksWarn("ww_ctx->contending_lock")
	}
	c.contending = m
	c.lockID = 0
	return ErrDeadlock
}

// injectDeadlock is ww_mutex_deadlock_injection: every so often, at a
// growing interval, pretend m was contended.
func (c *WWAcquireCtx) injectDeadlock(m *WWMutex) bool {
	if !c.inject {
		return false
	}
	if c.countdown > 0 {
		c.countdown--
		return false
	}
	t := c.interval
	if t > math.MaxUint32/4 {
		t = math.MaxUint32
	} else {
		t = t*2 + t + t/2
	}
	c.interval, c.countdown = t, t
	c.contending = m
	c.lockID = 0
	return true
}

// debugLocksWarn is DEBUG_LOCKS_WARN_ON(cond) with cond true. Unlike the
// kernel it does not turn the validator off: reports never end checking.
func debugLocksWarn(cond string) {
	krules.Emit(warnf(krules.LockdepMisuse, "DEBUG_LOCKS_WARN_ON(%s)", cond))
}
