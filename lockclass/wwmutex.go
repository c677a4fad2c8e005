package lockclass

import (
	"context"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/nonblock"
)

// WWMutex is the kernel's struct ww_mutex: a sleeping lock of a WWClass
// that a goroutine can take together with others of its class, in any
// order, inside a WWAcquireCtx, without deadlock. When two contexts
// collide, the class's algorithm decides by stamp who backs off:
//
//   - wait-die (NewWDClass): a younger context that would wait for an
//     older holder gets ErrDeadlock at once; an older one waits;
//   - wound-wait (NewWWClass): an older context wounds a younger holder,
//     which gets ErrDeadlock at its next lock that has to wait (at once if
//     it is waiting already); a younger one waits for an older holder.
//
// A context that holds none of the class's locks never backs off. Backing
// off means: Unlock every WWMutex held in the context, LockSlow the
// contended one, and take the others again.
//
// Lock(nil) and TryLock(nil) use a WWMutex as a plain mutex. A waiter
// without a context queues at the tail; one with a context queues just
// before the first waiter whose context is younger, waiters without a
// context not counting, or at the tail if there is none
// (__ww_mutex_add_waiter). An Unlock hands the lock to the first waiter,
// so contexts get it in stamp order, older first.
//
// Call Init with the class before use. A WWMutex must not be copied, and
// must be unlocked by the goroutine that locked it.
type WWMutex struct {
	_ noCopy
	// state is the lock word with ww->ctx in it, by stamp, so that an
	// uncontended Lock or Unlock is one atomic on a plain word, as
	// sync.Mutex's: 0 is unlocked; otherwise the low two bits are the tag
	// (wwHeld, wwWaiters when waiters are queued, wwStale for an unlocked
	// mutex with a stale context on it, which only misuse produces), then
	// wwCtx if the holder has a context, and above it the context's stamp.
	// A contender needs no more of the holder than its stamp, but for a
	// wound, which goes through the class (wwWounds). The word was a pointer
	// to the holder's context before, whose compare-and-swap is a call into
	// the runtime (the write barrier's test, spills, two returns): the plain
	// word took the bench figure "WWMutex 8 in one ctx" (eight locks in one
	// context) from 2409 to 2021 instructions per op (cachegrind) and from
	// 207 to 155 ns (min of 80 noisy runs; eight sync.Mutex: 45.5) on an AMD
	// EPYC (Zen 3, KVM).
	state atomic.Uint64
	// ctx is the holder's context (ww->ctx itself), for the holder's
	// Unlock, which counts the lock out of it: written by whoever takes the
	// lock, after the state word (or hands it over, under wmu), read only
	// by the holder. Unlock leaves it behind.
	ctx   *WWAcquireCtx
	class *WWClass
	wmu   sync.Mutex  // wait_lock: guards waiters
	wq    []*wwWaiter // contexts in stamp order, context-less waiters where they queued
	own   owner
	dep   Map
}

// The state word's tags and flag (see WWMutex.state).
const (
	wwHeld    = 1 // held, no waiters
	wwWaiters = 2 // held, waiters queued
	wwStale   = 3 // unlocked, with a stale ww->ctx
	wwTags    = 3
	wwCtx     = 4 // the holder has a context; its stamp is above
)

// wwWord is the state word for ctx (nil: no context) with tag.
func wwWord(ctx *WWAcquireCtx, tag uint64) uint64 {
	if ctx == nil {
		return tag
	}
	return uint64(ctx.stamp)<<3 | wwCtx | tag
}

// wwHolds reports whether the state word s names ctx as ww->ctx.
func wwHolds(s uint64, ctx *WWAcquireCtx) bool { return s&^wwTags == wwWord(ctx, 0) }

// wwYounger reports whether the state word s names a context younger than
// ctx: one that took its stamp after ctx.
func wwYounger(s uint64, ctx *WWAcquireCtx) bool { return s&wwCtx != 0 && int64(s>>3) > ctx.stamp }

type wwWaiter struct {
	ctx     *WWAcquireCtx
	ch      chan struct{}
	granted bool // guarded by wmu: the lock was handed over to this waiter
}

func (m *WWMutex) lockdepMap() *Map { return &m.dep }

// Init (re)initialises the mutex as one of class: ww_mutex_init. Every
// WWMutex of a class shares the lockdep class "NAME_mutex" unless an option
// says otherwise.
//
//go:noinline
func (m *WWMutex) Init(class *WWClass, opts ...Option) {
	pc := stack.ReturnPC()
	m.class = class
	m.dep.init(pc, mutexDefaults, append([]Option{WithKey(&class.mutexKey)}, opts...))
}

// Class returns the mutex's class.
func (m *WWMutex) Class() *WWClass { return m.class }

// Lock takes m inside ctx: ww_mutex_lock. It returns nil once m is held,
// ErrAlready if ctx already holds m, or ErrDeadlock when ctx must back off
// (see WWMutex). With a nil ctx it is a plain mutex lock and always
// succeeds.
//
//go:noinline
func (m *WWMutex) Lock(ctx *WWAcquireCtx) error {
	if !compiledIn {
		// Validation compiled out: the lock word and ctx->acquired inline,
		// as Unlock's (the figure "WWMutex 8 in one ctx" built with
		// krules_nolockdep: 1682 -> 1003 instructions per op, cachegrind).
		if ctx != nil && !ctx.done && !ctx.inject && ctx.contending == nil && m.class == ctx.class {
			if ctx.acquired == 0 {
				ctx.resetWound()
			}
			if m.state.CompareAndSwap(0, wwWord(ctx, wwHeld)) {
				m.ctx = ctx
				ctx.acquired++
				return nil
			}
		}
		return m.lock(nil, ctx, 0)
	}
	id := task.GoID()
	// The merge, inline: a free m of ctx's class locked on the goroutine
	// that initialised ctx, whose record Init kept (no task lookup), with
	// nothing to warn about (ctx.lockID) and nothing to sleep in, while the
	// top entry is of m's class and counts a reference more, as
	// acquireNested's first tier. The first lock of an attempt, which pushes
	// the entry and clears a wound, is lockCached's; it and the whole way
	// read the return address themselves, so that the merge keeps no
	// spills. The lock is taken before the reference is counted, so that a
	// busy m leaves nothing to undo; a top entry of m's class says the
	// class is cached (every entry names its class). One test an if, so
	// that the compiler branches on each instead of building a bool (the
	// figures are in fastpath_nest.go).
	if ctx == nil || ^id != ctx.lockID {
		return m.lockOuter(ctx)
	}
	t := ctx.own.t
	if ctx.acquired == 0 {
		// The first lock of an attempt, tested before the stack's loads,
		// which lockCached makes again: WWMutex 8 in one ctx 1777 -> 1762
		// instructions (cachegrind, AMD EPYC (Zen 3, KVM)).
		return m.lockCached(ctx, t, id)
	}
	held := t.Lockdep.Held
	n := len(held) - 1
	if n < 0 {
		return m.lockOuter(ctx)
	}
	top, c := &held[n], m.dep.cache[0].Load()
	if top.Class != unsafe.Pointer(c) {
		return m.lockCached(ctx, t, id)
	}
	r := top.References
	if r >= 2046 {
		return m.lockOuter(ctx) // the slow path warns at the limit
	}
	if !enabled.Load() {
		return m.lockOuter(ctx)
	}
	if m.class != ctx.class {
		return m.lockOuter(ctx)
	}
	if c.state.Load()|uint32(t.NonBlock|t.Preempt|t.Lockdep.Off) != 0 {
		return m.lockOuter(ctx)
	}
	if !m.state.CompareAndSwap(0, ctx.held) {
		return m.lockOuter(ctx)
	}
	top.References = max(r, 1) + 1
	m.ctx, m.own.t, m.own.id = ctx, t, id
	ctx.acquired++ // ww_mutex_lock_acquired: lockID says its checks pass
	return nil
}

// lockOuter is Lock's whole way, with the site read one frame further.
//
//go:noinline
func (m *WWMutex) lockOuter(ctx *WWAcquireCtx) error {
	return m.lock(nil, ctx, stack.OuterReturnPC())
}

// lockCached is Lock's cached path when the acquisition does not merge
// into the top entry, or is the first of an attempt: the caller is ctx's
// goroutine (id, record t) and ctx.lockID says there is nothing to warn
// about. The acquisition merges or is pushed as acquireNested says, or
// goes the whole way. It reads Lock's site one frame further.
//
//go:noinline
func (m *WWMutex) lockCached(ctx *WWAcquireCtx, t *task.Task, id int64) error {
	pc := stack.OuterReturnPC()
	if m.state.Load() != 0 {
		return m.lock(nil, ctx, pc) // -EALREADY, or it waits
	}
	// A free m is not ctx's (no -EALREADY), so the wound is cleared at the
	// first lock of an attempt now, as __mutex_lock_common clears it before
	// lock_acquire; the whole way clears it again, to the same effect.
	// Before the loads below, so that the calls keep none of them live:
	// after them, which were spilled on every first lock, WWMutex 8 in one
	// ctx took 1781 instructions, before them 1777 (cachegrind, AMD EPYC
	// (Zen 3, KVM)).
	if ctx.acquired == 0 {
		if ctx.wounded.Load() {
			ctx.resetWound()
		} else if ctx.class.wounds.pending.Load() != 0 {
			ctx.resetWound()
		}
	}
	c := m.dep.cache[0].Load()
	if c == nil {
		return m.lock(nil, ctx, pc)
	}
	if !enabled.Load() {
		return m.lock(nil, ctx, pc)
	}
	if m.class != ctx.class {
		return m.lock(nil, ctx, pc)
	}
	if c.state.Load()|uint32(t.NonBlock|t.Preempt|t.Lockdep.Off) != 0 {
		return m.lock(nil, ctx, pc)
	}
	held := t.Lockdep.Held
	n := len(held) - 1
	if n < 0 {
		return m.lock(nil, ctx, pc)
	}
	// acquireNested's tiers, with pushNested's quick one inline: the tests
	// above are quickKey's but for the room on the stack and the chain.
	if top := &held[n]; top.Class == unsafe.Pointer(c) && top.References < 2046 {
		top.References = max(top.References, 1) + 1
	} else if top.Instance != unsafe.Pointer(&ctx.dep) {
		return m.lock(nil, ctx, pc)
	} else if key := chainKeyMix(t.Lockdep.ChainKey, c.modes[0].id); len(held) != cap(held) && key == m.dep.lastChain.Load() {
		pushNestQuick(t, &m.dep, c, &ctx.dep, pc, key)
		stampQuick(t)
	} else if !pushNested(t, &m.dep, c, &ctx.dep, pc) {
		return m.lock(nil, ctx, pc)
	}
	if !m.state.CompareAndSwap(0, ctx.held) {
		return m.take(nil, ctx, t)
	}
	m.ctx, m.own.t, m.own.id = ctx, t, id
	ctx.acquired++
	return nil
}

// LockKillable is Lock that gives up when kctx is done, returning
// kctx.Err(): ww_mutex_lock_interruptible.
//
//go:noinline
func (m *WWMutex) LockKillable(kctx context.Context, ctx *WWAcquireCtx) error {
	return m.lock(kctx, ctx, stack.ReturnPC())
}

// LockSlow takes m after backing off: ww_mutex_lock_slow. ctx must hold no
// WWMutex and m must be the lock that returned ErrDeadlock (both are
// DEBUG_LOCKS_WARN_ONs otherwise). Then it waits as long as it takes and
// never fails; in the reported misuses it behaves as Lock and, as the
// kernel's, drops the result.
//
//go:noinline
func (m *WWMutex) LockSlow(ctx *WWAcquireCtx) {
	if ctx != nil && ctx.contending == nil {
		debugLocksWarn("!ctx->contending_lock")
	}
	_ = m.lock(nil, ctx, stack.ReturnPC())
}

// LockSlowKillable is LockSlow that gives up when kctx is done:
// ww_mutex_lock_slow_interruptible. It returns nil or kctx.Err().
//
//go:noinline
func (m *WWMutex) LockSlowKillable(kctx context.Context, ctx *WWAcquireCtx) error {
	if ctx != nil && ctx.contending == nil {
		debugLocksWarn("!ctx->contending_lock")
	}
	return m.lock(kctx, ctx, stack.ReturnPC())
}

func (m *WWMutex) lock(kctx context.Context, ctx *WWAcquireCtx, pc uintptr) error {
	var nest *Map
	if ctx != nil {
		if s := m.state.Load(); s&wwTags != wwStale && wwHolds(s, ctx) {
			// ww_mutex_lock's might_sleep comes before
			// __mutex_lock_common's -EALREADY.
			if compiledIn && enabled.Load() {
				nonblock.MightSleep()
			}
			return ErrAlready
		}
		ctx.resetWound()
		nest = &ctx.dep
	}
	var t *task.Task
	if nest != nil && compiledIn && enabled.Load() {
		// acquire with a nest lock: might_sleep, then acquireNested's
		// cached path or acquireSlow.
		t = task.Current()
		if t.NonBlock|t.Preempt != 0 {
			nonblock.MightSleep() // under the panic policy it unwinds here
		}
		if !acquireNested(t, &m.dep, nest, pc) {
			t = acquireSlow(t, &m.dep, 0, 0, fSleep, nest, pc, mutexDefaults)
		}
	} else {
		t = acquire(&m.dep, 0, 0, fSleep, nest, pc, mutexDefaults)
	}
	return m.take(kctx, ctx, t)
}

// take takes m once its acquisition is annotated (t is the goroutine's
// record if the validator follows it): the lock word, or the slow path's
// wait; a failed lock annotates a release.
func (m *WWMutex) take(kctx context.Context, ctx *WWAcquireCtx, t *task.Task) error {
	var err error
	if m.state.CompareAndSwap(0, wwWord(ctx, wwHeld)) {
		m.ctx = ctx
	} else {
		err = m.lockSlow(kctx, ctx)
	}
	if err != nil {
		if t != nil {
			release(&m.dep, t) // a failed lock annotates a release
		}
		return err
	}
	if t != nil {
		m.own.set(t)
	}
	if ctx != nil {
		ctx.lockAcquired(m)
		if ctx.inject && ctx.acquired > 1 && ctx.injectDeadlock(m) {
			m.Unlock()
			return ErrDeadlock
		}
	}
	return nil
}

// lockSlow queues the caller and waits for the lock, backing off as the
// class's algorithm says (__ww_mutex_lock's slow path).
func (m *WWMutex) lockSlow(kctx context.Context, ctx *WWAcquireCtx) error {
	m.wmu.Lock()
	for {
		s := m.state.Load()
		if s == 0 || s&wwTags == wwStale {
			if m.state.CompareAndSwap(s, wwWord(ctx, wwHeld)) {
				m.ctx = ctx
				if s != 0 {
					debugLocksWarn("ww->ctx") // a stale context left on the lock
				}
				if ctx != nil && len(m.wq) != 0 {
					m.checkWaiters(ctx)
				}
				m.wmu.Unlock()
				return nil
			}
			continue
		}
		if m.state.CompareAndSwap(s, s&^wwTags|wwWaiters) {
			break
		}
	}
	w := &wwWaiter{ctx: ctx, ch: make(chan struct{}, 1)}
	if err := m.addWaiter(w); err != nil {
		m.dropWaitersBit()
		m.wmu.Unlock()
		return err
	}
	if ctx != nil {
		// Published before the wound check below, so that a wounder either
		// sees it and wakes us, or we see its wound: one that has this
		// context (checkWaiters) through waiting, one that knows only its
		// stamp (addWaiter) through the class's wwWounds.
		ctx.waiting.Store(w)
		defer ctx.waiting.Store(nil)
		if !ctx.class.waitDie {
			ctx.class.wounds.enter(ctx)
			defer ctx.class.wounds.leave(ctx)
		}
	}
	var done <-chan struct{}
	if kctx != nil {
		done = kctx.Done()
	}
	// The hung-task detector's view of the wait (kernel/hung_task.c).
	if task.Tracking() {
		defer task.EndWait(task.BeginWait(unsafe.Pointer(&m.dep), 0))
	}
	for {
		if w.granted {
			m.wmu.Unlock()
			return nil
		}
		// The signal before the kill, as __mutex_lock_common tests them: a
		// killed wait returns kctx.Err() even where the context would back
		// off, and __ww_mutex_kill leaves no contending lock.
		if done != nil && kctx.Err() != nil {
			m.removeWaiter(w)
			m.wmu.Unlock()
			return kctx.Err()
		}
		if ctx != nil {
			if err := m.checkKill(ctx, w); err != nil {
				m.removeWaiter(w)
				m.wmu.Unlock()
				return err
			}
		}
		m.wmu.Unlock()
		select {
		case <-w.ch:
		case <-done:
		}
		m.wmu.Lock()
	}
}

// addWaiter queues w in stamp order (__ww_mutex_add_waiter). Wait-die: a
// younger context with locks that finds an older one queued dies at once,
// and younger waiters with locks behind w are told to die. Wound-wait: w's
// context wounds a younger holder.
func (m *WWMutex) addWaiter(w *wwWaiter) error {
	ctx := w.ctx
	if ctx == nil {
		m.wq = append(m.wq, w)
		return nil
	}
	pos := len(m.wq)
	for i := len(m.wq) - 1; i >= 0; i-- {
		cur := m.wq[i]
		if cur.ctx == nil {
			continue
		}
		if ctx.younger(cur.ctx) {
			if ctx.class.waitDie && ctx.acquired > 0 {
				return ctx.kill(m)
			}
			break
		}
		pos = i
		m.die(cur, ctx)
	}
	m.wq = append(m.wq, nil)
	copy(m.wq[pos+1:], m.wq[pos:])
	m.wq[pos] = w
	if s := m.state.Load(); !ctx.class.waitDie && ctx.acquired > 0 && wwYounger(s, ctx) {
		// __ww_mutex_wound of the holder, known by its stamp: it cannot go
		// away meanwhile, the waiters tag making its Unlock take wmu.
		ctx.class.wounds.wound(int64(s >> 3))
	}
	return nil
}

func (m *WWMutex) removeWaiter(w *wwWaiter) {
	for i, cur := range m.wq {
		if cur == w {
			m.wq = append(m.wq[:i], m.wq[i+1:]...)
			break
		}
	}
	if len(m.wq) == 0 {
		m.dropWaitersBit()
	}
}

func (m *WWMutex) dropWaitersBit() {
	if len(m.wq) != 0 {
		return
	}
	for {
		s := m.state.Load()
		if s&wwTags != wwWaiters || m.state.CompareAndSwap(s, s&^wwTags|wwHeld) {
			return
		}
	}
}

// checkKill is __ww_mutex_check_kill: must ctx, queued as w, back off now?
func (m *WWMutex) checkKill(ctx *WWAcquireCtx, w *wwWaiter) error {
	if ctx.acquired == 0 {
		return nil // holding nothing, it cannot be part of a deadlock
	}
	if !ctx.class.waitDie {
		if ctx.wounded.Load() {
			return ctx.kill(m)
		}
		return nil
	}
	if s := m.state.Load(); s&wwCtx != 0 && int64(s>>3) < ctx.stamp {
		return ctx.kill(m) // the holder is older
	}
	// An older context queued ahead of us will get the lock first.
	for _, cur := range m.wq {
		if cur == w {
			break
		}
		if cur.ctx != nil {
			return ctx.kill(m)
		}
	}
	return nil
}

// die is __ww_mutex_die: wake a waiter of a wait-die class that is younger
// than ctx and holds locks, so that it backs off. It reports whether ctx's
// class is wait-die, woken or not, as the kernel's does: the waiters
// behind the first with a context are younger still (the queue is in
// stamp order), and wait-die never wounds.
func (m *WWMutex) die(w *wwWaiter, ctx *WWAcquireCtx) bool {
	if !ctx.class.waitDie {
		return false
	}
	if w.ctx.acquired > 0 && w.ctx.younger(ctx) {
		wake(w)
	}
	return true
}

// wound is __ww_mutex_wound: ctx, holding locks, wants a lock held by the
// younger hold; mark hold wounded and wake it if it is waiting somewhere.
func (m *WWMutex) wound(ctx, hold *WWAcquireCtx) bool {
	if hold == nil || ctx.acquired == 0 || !hold.younger(ctx) {
		return false
	}
	hold.woundNow()
	return true
}

// checkWaiters is __ww_mutex_check_waiters, after ctx took the lock: in a
// wait-die class it stops at the first waiter with a context, woken if it
// must die; in a wound-wait class it stops at the first waiter older than
// ctx that holds locks, which wounds ctx, and passes over the others.
func (m *WWMutex) checkWaiters(ctx *WWAcquireCtx) {
	for _, cur := range m.wq {
		if cur.ctx == nil {
			continue
		}
		if m.die(cur, ctx) || m.wound(cur.ctx, ctx) {
			return
		}
	}
}

func wake(w *wwWaiter) {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// TryLock takes m if it is free and reports whether it did:
// ww_mutex_trylock. It never waits and never wounds. With a context, m is
// counted in it (and nests under it for lockdep); a lock the context
// already holds is not free.
//
//go:noinline
func (m *WWMutex) TryLock(ctx *WWAcquireCtx) bool {
	if ctx != nil {
		ctx.resetWound()
	}
	if !m.state.CompareAndSwap(0, wwWord(ctx, wwHeld)) {
		if s := m.state.Load(); s&wwTags != wwStale || !m.state.CompareAndSwap(s, wwWord(ctx, wwHeld)) {
			return false
		}
		debugLocksWarn("ww->ctx") // a stale context left on the lock
	}
	m.ctx = ctx
	var nest *Map
	if ctx != nil {
		// ww_mutex_trylock: ww_mutex_set_context_fastpath's checks come
		// before mutex_acquire_nest, unlike ww_mutex_lock's.
		ctx.lockAcquired(m)
		nest = &ctx.dep
	}
	if compiledIn && enabled.Load() {
		if t := acquire(&m.dep, 0, 0, fTry, nest, stack.ReturnPC(), mutexDefaults); t != nil {
			m.own.set(t)
		}
	}
	return true
}

// Unlock releases m: ww_mutex_unlock. Unlocking a WWMutex that is not
// locked is reported (bad unlock balance) and changes nothing.
func (m *WWMutex) Unlock() {
	if !compiledIn {
		// Validation compiled out: ctx->acquired and the lock word.
		s := m.state.Load()
		if s&wwTags == wwHeld && (s&wwCtx == 0 || m.ctx.acquired > 0) {
			if s&wwCtx != 0 {
				m.ctx.acquired--
			}
			if !m.state.CompareAndSwap(s, 0) {
				m.handOff()
			}
			return
		}
		m.unlock(s)
		return
	}
	id := task.GoID()
	// The cached path, inline: the holder, on the goroutine that locked m
	// in a context, finds m's entry on top as releaseNested does (by
	// instance, or by class with references) and drops a reference or pops
	// it with its last. The state word needs no test: m.own.id says m is
	// the caller's, so it is held, and so m.ctx is the holder's own, nil if
	// it has no context (whose flag the state word carries); the
	// compare-and-swap expects the word the context keeps (held), which a
	// queued waiter's tag fails into handOff. Testing m.ctx rather than the
	// state word's flag spares the load of the word and the tag arithmetic
	// (WWMutex 8 in one ctx 1814 -> 1783 instructions, cachegrind, AMD EPYC
	// (Zen 3, KVM)). One test an if, as in Lock (the other figures are in
	// fastpath_nest.go).
	if id != m.own.id || id == 0 {
		m.unlock(m.state.Load())
		return
	}
	c := m.ctx
	if c == nil {
		m.unlock(m.state.Load()) // held without a context: no ctx->acquired to count
		return
	}
	t := m.own.t
	held := t.Lockdep.Held
	n := len(held) - 1
	if n < 0 {
		m.unlock(m.state.Load())
		return
	}
	h := &held[n]
	if uint64(uint32(h.PinCount))|uint64(h.Stamp) != 0 {
		m.unlock(m.state.Load())
		return
	}
	if c.acquired <= 0 {
		m.unlock(m.state.Load())
		return
	}
	if r := h.References; r > 1 {
		// A merged entry of m's class: drop a reference.
		if h.Class != unsafe.Pointer(m.dep.cache[0].Load()) {
			m.unlock(m.state.Load())
			return
		}
		h.References = r - 1
	} else {
		// m's own entry, or the last reference of one of m's class: pop.
		if h.Instance != unsafe.Pointer(&m.dep) && (r == 0 || h.Class != unsafe.Pointer(m.dep.cache[0].Load())) {
			m.unlock(m.state.Load())
			return
		}
		t.Lockdep.Held = held[:n] // before any other store: only the length changes
		t.Lockdep.ChainKey = h.PrevChainKey
		h.Instance, h.Class, h.NestLock, h.References = nil, nil, nil, 0
		if n == 0 { // only depth 0 can leave the record empty, as popHeld says
			t.ReleaseIfEmpty()
		}
	}
	c.acquired--
	m.own.id = 0
	if !m.state.CompareAndSwap(c.held, 0) {
		m.handOff() // waiters queued
	}
}

// unlock is Unlock's whole way, with s the state it read.
func (m *WWMutex) unlock(s uint64) {
	if s == 0 || s&wwTags == wwStale {
		if compiledIn && enabled.Load() {
			releaseShared(&m.dep)
		}
		return
	}
	if c := m.ctx; s&wwCtx != 0 {
		if c.acquired <= 0 {
			debugLocksWarn("!lock->ctx->acquired")
		} else {
			c.acquired--
		}
	}
	if compiledIn {
		m.releaseDep()
	}
	if s&wwTags == wwHeld && m.state.CompareAndSwap(s, 0) {
		return
	}
	m.handOff()
}

// handOff releases m, whose state may say that waiters are queued, under
// the wait lock: to the first waiter, or to nobody.
func (m *WWMutex) handOff() {
	m.wmu.Lock()
	if len(m.wq) == 0 {
		m.state.Store(0)
		m.wmu.Unlock()
		return
	}
	w := m.wq[0]
	m.wq = append(m.wq[:0], m.wq[1:]...)
	m.ctx = w.ctx
	if len(m.wq) == 0 {
		m.state.Store(wwWord(w.ctx, wwHeld))
	} else {
		m.state.Store(wwWord(w.ctx, wwWaiters))
	}
	w.granted = true
	if w.ctx != nil {
		m.checkWaiters(w.ctx)
	}
	wake(w)
	m.wmu.Unlock()
}

// IsLocked reports whether somebody holds m: ww_mutex_is_locked.
func (m *WWMutex) IsLocked() bool { s := m.state.Load(); return s != 0 && s&wwTags != wwStale }

// HeldBy reports whether m is held through ctx: ww->ctx == ctx, as drivers
// compare dma_resv_locking_ctx with their ticket (TTM finds the ticket of
// a validation that way). A nil ctx asks whether m is free or held without
// a context, the kernel's NULL. It reads the state word, whose context is
// the holder's stamp, so any goroutine may ask without racing the holder;
// about its own ctx the answer cannot change under it. Contexts of m's
// class are told apart by stamp; a context of another class, which may
// not hold m (ww_mutex_lock_acquired's ww_class check), is never the
// holder.
func (m *WWMutex) HeldBy(ctx *WWAcquireCtx) bool {
	s := m.state.Load()
	if s == 0 || s&wwTags == wwStale {
		return ctx == nil
	}
	if ctx != nil && ctx.class != m.class {
		return false
	}
	return wwHolds(s, ctx)
}

// releaseDep is owner.release with the cached path of a release by the
// holder: releaseNested, with the record Lock kept, and no task lookup.
func (m *WWMutex) releaseDep() {
	if id := m.own.id; id != 0 && id == task.GoID() && releaseNested(m.own.t, &m.dep) {
		m.own.id = 0 // t is stale now, as owner says
		return
	}
	m.own.release(&m.dep)
}
