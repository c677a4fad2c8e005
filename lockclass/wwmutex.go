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
// Lock(nil) and TryLock(nil) use a WWMutex as a plain mutex. The waiters
// queue in stamp order (older first; waiters without a context last) and an
// Unlock hands the lock to the first of them.
//
// Call Init with the class before use. A WWMutex must not be copied, and
// must be unlocked by the goroutine that locked it.
type WWMutex struct {
	_ noCopy
	// state packs the lock word and ww->ctx into one pointer, so that an
	// uncontended Lock or Unlock is one atomic, as sync.Mutex's: nil is
	// unlocked, otherwise it points at the holder context's tags (wwNoCtx's
	// for a holder without context), tags[1] when waiters are queued.
	// tags[2] marks an unlocked mutex with a stale context on it, which
	// only misuse produces. Packing took the bench figure "WWMutex 8 in one ctx" (eight locks in one
	// context) from 939/970/984 to 880/835/803 ns/op; eight sync.Mutex:
	// 138/145/134 and 139/138/136.
	state atomic.Pointer[byte]
	class *WWClass
	wmu   sync.Mutex  // wait_lock: guards waiters
	wq    []*wwWaiter // in stamp order, context-less waiters last
	own   owner
	dep   Map
}

// wwNoCtx is the holder context that stands for "none" in a WWMutex's
// state. It is never written; only its address is used.
var wwNoCtx WWAcquireCtx

const (
	wwHeld    = 0 // tags index: held, no waiters
	wwWaiters = 1 // held, waiters queued
	wwStale   = 2 // unlocked, with a stale ww->ctx
)

// wwWord is the state word for ctx (nil: no context) with tag i.
func wwWord(ctx *WWAcquireCtx, i int) *byte {
	if ctx == nil {
		ctx = &wwNoCtx
	}
	return &ctx.tags[i]
}

// wwDecode splits a non-nil state word into its context and tag: tags is
// the first field of a WWAcquireCtx, which is at least 4-aligned.
func wwDecode(p *byte) (*WWAcquireCtx, int) {
	i := int(uintptr(unsafe.Pointer(p)) & 3)
	c := (*WWAcquireCtx)(unsafe.Add(unsafe.Pointer(p), -i))
	if c == &wwNoCtx {
		c = nil
	}
	return c, i
}

// tags must open WWAcquireCtx for wwDecode.
var _ = [1]struct{}{}[unsafe.Offsetof(WWAcquireCtx{}.tags)]

// holder returns ww->ctx: the context m is held (or stale) with.
func (m *WWMutex) holder() *WWAcquireCtx {
	p := m.state.Load()
	if p == nil {
		return nil
	}
	c, _ := wwDecode(p)
	return c
}

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
		// Validation compiled out: the lock word and ctx->acquired.
		if ctx != nil && !ctx.done && !ctx.inject && ctx.contending == nil && m.class == ctx.class {
			ctx.resetWound()
			if m.state.CompareAndSwap(nil, wwWord(ctx, wwHeld)) {
				ctx.acquired++
				return nil
			}
		}
		return m.lock(nil, ctx, 0)
	}
	id, pc := task.SiteID()
	// The cached path, inline: a free m of ctx's class locked on the
	// goroutine that initialised ctx, whose record Init kept (no task
	// lookup), with nothing to warn about (ctx.lockID) and nothing to sleep
	// in; the acquisition merges into the top entry or is pushed, as
	// acquireNested says. The loads come first and the tests are plain, so
	// that the compiler branches on each instead of building a bool.
	if ctx == nil || id != ctx.lockID || id == 0 {
		return m.lock(nil, ctx, pc)
	}
	s, on, t, c := m.state.Load(), enabled.Load(), ctx.own.t, m.dep.cache[0].Load()
	if s != nil || !on || m.class != ctx.class || c == nil {
		return m.lock(nil, ctx, pc)
	}
	held := t.Lockdep.Held
	n := len(held) - 1
	if n < 0 || c.state.Load()|uint32(t.NonBlock|t.Preempt|t.Lockdep.Off) != 0 {
		return m.lock(nil, ctx, pc)
	}
	ctx.resetWound()
	if top := &held[n]; top.Class == unsafe.Pointer(c) && top.References < 2046 {
		top.References = max(top.References, 1) + 1
	} else if top.Instance != unsafe.Pointer(&ctx.dep) || !pushNested(t, &m.dep, c, &ctx.dep, pc) {
		return m.lock(nil, ctx, pc)
	}
	if !m.state.CompareAndSwap(nil, wwWord(ctx, wwHeld)) {
		return m.take(nil, ctx, t)
	}
	m.own.t, m.own.id = t, id
	ctx.acquired++ // ww_mutex_lock_acquired: lockID says its checks pass
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
		if p := m.state.Load(); p != nil && p != wwWord(ctx, wwStale) && m.holder() == ctx {
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
	if !m.state.CompareAndSwap(nil, wwWord(ctx, wwHeld)) {
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
		if s == nil || s == m.staleWord(s) {
			if m.state.CompareAndSwap(s, wwWord(ctx, wwHeld)) {
				if s != nil {
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
		hold, _ := wwDecode(s)
		if m.state.CompareAndSwap(s, wwWord(hold, wwWaiters)) {
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
	// The hung-task detector's view of the wait (kernel/hung_task.c).
	if task.Tracking() {
		defer task.EndWait(task.BeginWait(unsafe.Pointer(&m.dep), 0))
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
		m.wound(ctx, m.holder())
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
		if s == nil {
			return
		}
		hold, i := wwDecode(s)
		if i != wwWaiters || m.state.CompareAndSwap(s, wwWord(hold, wwHeld)) {
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
	if hold := m.holder(); hold != nil && ctx.younger(hold) {
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
	if ctx != nil {
		ctx.resetWound()
	}
	if !m.state.CompareAndSwap(nil, wwWord(ctx, wwHeld)) {
		if s := m.state.Load(); s == nil || s != m.staleWord(s) || !m.state.CompareAndSwap(s, wwWord(ctx, wwHeld)) {
			return false
		}
		debugLocksWarn("ww->ctx") // a stale context left on the lock
	}
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
	if !compiledIn {
		// Validation compiled out: ctx->acquired and the lock word.
		s := m.state.Load()
		if c, i := wwDecode(s); s != nil && i == wwHeld && (c == nil || c.acquired > 0) {
			if c != nil {
				c.acquired--
			}
			if !m.state.CompareAndSwap(s, nil) {
				m.handOff()
			}
			return
		}
		m.unlock(s)
		return
	}
	id := task.GoID()
	s := m.state.Load()
	// The cached path, inline: the holder, on the goroutine that locked m
	// in a context, finds m's entry on top (releaseNested's test) and
	// drops a reference or pops it with its last.
	if id != m.own.id || id == 0 || s == nil {
		m.unlock(s)
		return
	}
	c, i := wwDecode(s)
	t := m.own.t
	held := t.Lockdep.Held
	n := len(held) - 1
	if i != wwHeld || c == nil || c.acquired <= 0 || n < 0 {
		m.unlock(s)
		return
	}
	h := &held[n]
	if uint64(uint32(h.PinCount))|uint64(h.Stamp) != 0 ||
		h.Instance != unsafe.Pointer(&m.dep) && (h.References == 0 || h.Class != unsafe.Pointer(m.dep.cache[0].Load())) {
		m.unlock(s)
		return
	}
	if h.References > 1 {
		h.References--
	} else {
		t.Lockdep.Held = held[:n] // before any other store: only the length changes
		t.Lockdep.ChainKey = h.PrevChainKey
		h.Instance, h.Class, h.NestLock, h.References = nil, nil, nil, 0
		t.ReleaseIfEmpty()
	}
	c.acquired--
	m.own.id = 0
	if !m.state.CompareAndSwap(s, nil) {
		m.handOff()
	}
}

// unlock is Unlock's whole way, with s the state it read.
func (m *WWMutex) unlock(s *byte) {
	if s == nil || s == m.staleWord(s) {
		if compiledIn && enabled.Load() {
			releaseShared(&m.dep)
		}
		return
	}
	if c, _ := wwDecode(s); c != nil {
		if c.acquired <= 0 {
			debugLocksWarn("!lock->ctx->acquired")
		} else {
			c.acquired--
		}
	}
	if compiledIn {
		m.releaseDep()
	}
	if _, i := wwDecode(s); i == wwHeld && m.state.CompareAndSwap(s, nil) {
		return
	}
	m.handOff()
}

// handOff releases m, whose state may say that waiters are queued, under
// the wait lock: to the first waiter, or to nobody.
func (m *WWMutex) handOff() {
	m.wmu.Lock()
	if len(m.wq) == 0 {
		m.state.Store(nil)
		m.wmu.Unlock()
		return
	}
	w := m.wq[0]
	m.wq = append(m.wq[:0], m.wq[1:]...)
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

// staleWord returns s if it marks an unlocked mutex with a stale context,
// else nil.
func (m *WWMutex) staleWord(s *byte) *byte {
	if _, i := wwDecode(s); i == wwStale {
		return s
	}
	return nil
}

// IsLocked reports whether somebody holds m: ww_mutex_is_locked.
func (m *WWMutex) IsLocked() bool { s := m.state.Load(); return s != nil && s != m.staleWord(s) }

// releaseDep is owner.release with the cached path of a release by the
// holder: releaseNested, with the record Lock kept, and no task lookup.
func (m *WWMutex) releaseDep() {
	if id := m.own.id; id != 0 && id == task.GoID() && releaseNested(m.own.t, &m.dep) {
		m.own.id = 0 // t is stale now, as owner says
		return
	}
	m.own.release(&m.dep)
}
