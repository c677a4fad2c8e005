package lockclass

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/krules/krules/internal/stack"
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
// Lock(nil) and TryLock(nil) use a WWMutex as a plain mutex. The waiters
// queue in stamp order (older first; waiters without a context last) and an
// Unlock hands the lock to the first of them.
//
// Call Init with the class before use. A WWMutex must not be copied, and
// must be unlocked by the goroutine that locked it.
type WWMutex struct {
	_     noCopy
	state atomic.Int32
	ctx   atomic.Pointer[WWAcquireCtx] // ww->ctx: the holder's context
	class *WWClass
	wmu   sync.Mutex  // wait_lock: guards waiters
	wq    []*wwWaiter // in stamp order, context-less waiters last
	own   owner
	dep   Map
}

const (
	wwLocked  = 1 << 0
	wwWaiters = 1 << 1
)

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
	return m.lock(nil, ctx, stack.ReturnPC())
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
		if m.ctx.Load() == ctx {
			return ErrAlready
		}
		// Reset the wound after a back-off: nobody can wound a context
		// that holds nothing.
		if ctx.acquired == 0 {
			ctx.wounded.Store(false)
		}
		nest = &ctx.dep
	}
	t := acquire(&m.dep, 0, 0, fSleep, nest, pc, mutexDefaults)
	var err error
	if m.state.CompareAndSwap(0, wwLocked) {
		m.setContext(ctx)
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

// setContext publishes the new holder's context after an uncontended
// acquisition (ww_mutex_set_context_fastpath): waiters that queued before
// they could see it are checked again.
func (m *WWMutex) setContext(ctx *WWAcquireCtx) {
	if m.ctx.Load() != nil {
		debugLocksWarn("ww->ctx") // a stale context left on the lock
	}
	if ctx == nil {
		return
	}
	m.ctx.Store(ctx)
	if m.state.Load()&wwWaiters != 0 {
		m.wmu.Lock()
		m.checkWaiters(ctx)
		m.wmu.Unlock()
	}
}

// lockSlow queues the caller and waits for the lock, backing off as the
// class's algorithm says (__ww_mutex_lock's slow path).
func (m *WWMutex) lockSlow(kctx context.Context, ctx *WWAcquireCtx) error {
	m.wmu.Lock()
	for {
		s := m.state.Load()
		if s&wwLocked == 0 {
			if m.state.CompareAndSwap(s, s|wwLocked) {
				if old := m.ctx.Swap(ctx); old != nil {
					debugLocksWarn("ww->ctx")
				}
				if ctx != nil {
					m.checkWaiters(ctx)
				}
				m.wmu.Unlock()
				return nil
			}
			continue
		}
		if m.state.CompareAndSwap(s, s|wwWaiters) {
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
		// sees it and wakes us, or we see its wound.
		ctx.waiting.Store(w)
		defer ctx.waiting.Store(nil)
	}
	var done <-chan struct{}
	if kctx != nil {
		done = kctx.Done()
	}
	for {
		if w.granted {
			m.wmu.Unlock()
			return nil
		}
		if ctx != nil {
			if err := m.checkKill(ctx, w); err != nil {
				m.removeWaiter(w)
				m.wmu.Unlock()
				return err
			}
		}
		if done != nil && kctx.Err() != nil {
			m.removeWaiter(w)
			m.wmu.Unlock()
			return kctx.Err()
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
	if !ctx.class.waitDie {
		m.wound(ctx, m.ctx.Load())
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
		if s&wwWaiters == 0 || m.state.CompareAndSwap(s, s&^wwWaiters) {
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
	if hold := m.ctx.Load(); hold != nil && ctx.younger(hold) {
		return ctx.kill(m)
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
// than ctx and holds locks, so that it backs off.
func (m *WWMutex) die(w *wwWaiter, ctx *WWAcquireCtx) bool {
	if !w.ctx.class.waitDie {
		return false
	}
	if w.ctx.acquired > 0 && w.ctx.younger(ctx) {
		wake(w)
		return true
	}
	return false
}

// wound is __ww_mutex_wound: ctx, holding locks, wants a lock held by the
// younger hold; mark hold wounded and wake it if it is waiting somewhere.
func (m *WWMutex) wound(ctx, hold *WWAcquireCtx) bool {
	if hold == nil || ctx.acquired == 0 || !hold.younger(ctx) {
		return false
	}
	hold.wounded.Store(true)
	if w := hold.waiting.Load(); w != nil {
		wake(w)
	}
	return true
}

// checkWaiters is __ww_mutex_check_waiters, after ctx took the lock: the
// first waiter that must die is woken, or ctx wounded by an older waiter.
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
	if ctx != nil && ctx.acquired == 0 {
		ctx.wounded.Store(false)
	}
	if !m.state.CompareAndSwap(0, wwLocked) {
		return false
	}
	m.setContext(ctx)
	var nest *Map
	if ctx != nil {
		nest = &ctx.dep
	}
	if compiledIn && enabled.Load() {
		if t := acquire(&m.dep, 0, 0, fTry, nest, stack.ReturnPC(), mutexDefaults); t != nil {
			m.own.set(t)
		}
	}
	if ctx != nil {
		ctx.lockAcquired(m)
	}
	return true
}

// Unlock releases m: ww_mutex_unlock. Unlocking a WWMutex that is not
// locked is reported (bad unlock balance) and changes nothing.
func (m *WWMutex) Unlock() {
	if m.state.Load()&wwLocked == 0 {
		if compiledIn && enabled.Load() {
			releaseShared(&m.dep)
		}
		return
	}
	if c := m.ctx.Load(); c != nil {
		if c.acquired <= 0 {
			debugLocksWarn("!lock->ctx->acquired")
		} else {
			c.acquired--
		}
		m.ctx.Store(nil)
	}
	if compiledIn {
		m.own.release(&m.dep)
	}
	if m.state.CompareAndSwap(wwLocked, 0) {
		return
	}
	m.wmu.Lock()
	if len(m.wq) == 0 {
		m.state.Store(0)
		m.wmu.Unlock()
		return
	}
	w := m.wq[0]
	m.wq = append(m.wq[:0], m.wq[1:]...)
	if len(m.wq) == 0 {
		m.state.Store(wwLocked)
	}
	m.ctx.Store(w.ctx)
	w.granted = true
	if w.ctx != nil {
		m.checkWaiters(w.ctx)
	}
	wake(w)
	m.wmu.Unlock()
}

// IsLocked reports whether somebody holds m: ww_mutex_is_locked.
func (m *WWMutex) IsLocked() bool { return m.state.Load()&wwLocked != 0 }
