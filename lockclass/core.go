package lockclass

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/krules/krules/internal/list"
	"github.com/krules/krules/internal/task"
)

// core is the blocking part of the sleeping locks (Mutex is a core used only
// for writing, RWSem uses both sides): a state word that the uncontended
// paths change with one atomic operation, and a FIFO of waiters for the rest.
//
// Why not golang.org/x/sync/semaphore: Weighted takes an internal mutex on
// every Acquire and Release (about 24 ns a pair here, the whole budget of a
// validated lock), has no downgrade, and cannot tell an unlock of an unlocked
// lock from a valid one. The kernel's lock shape fits in one word instead
// (the mutex's owner word with its flags, the rwsem's count), and the core
// behaves as kernel/locking/mutex.c and rwsem.c (v6.12) do:
//
//   - A locker that finds the lock taken spins on it for a while before it
//     sleeps (mutex_optimistic_spin, rwsem_optimistic_spin; spin.go), and it
//     may take the lock ahead of the waiters already queued (lock stealing):
//     waking a sleeper and waiting for it to run costs far more than the
//     critical sections a sleeping lock usually guards, and a lock handed to
//     a sleeper each time forms a convoy: every release waits for a
//     goroutine to be scheduled, and the releaser then queues behind it.
//   - Stealing is bounded: a release wakes the first waiter, which tries the
//     lock; a mutex waiter that fails once sets the handoff bit
//     (__mutex_trylock_or_handoff), an rwsem waiter once it has waited
//     RWSEM_WAIT_TIMEOUT (rwsem_try_write_lock, rwsem_mark_wake). While it
//     is set nobody steals, and the next release hands the lock straight to
//     the first waiter (__mutex_handoff).
//   - Readers are fair to writers: once somebody is queued new readers queue
//     too, unless the lock is entirely free (the rwsem's reader lock
//     stealing); a release lets in the queued readers together, up to
//     maxReaderWake (rwsem_mark_wake), handing the lock to them directly.
//   - A release that wakes a waiter, to try or with the lock, yields its P
//     (runtime.Gosched). In the kernel the woken task gets a CPU at once: an
//     idle one, or the waker's, taken by wakeup preemption at the
//     preempt_enable() that ends __mutex_unlock_slowpath and up_write. Go's
//     ready() puts it in the waker's runnext instead, where it waits until
//     the waker blocks, an idle P steals it (microseconds later), or sysmon
//     preempts the waker (10 ms); meanwhile the waker keeps stealing the
//     lock, and the waiter neither gets it nor gets to set the handoff bit.
//     sync.Mutex yields for the same reason when it hands off (semrelease
//     with handoff). Against the same core without the yield (go run
//     ./bench, two series of 4 runs with 32-poll spins, on an AMD EPYC,
//     Zen 3, KVM, 2 shared vCPUs; noisy), the median longest wait went from
//     17-27 to 5-7 ms with 8 goroutines on a Mutex and from 7-10 to 4-5 ms
//     with 4, the median ratio of 8 readers and a writer from 1.50-1.73 to
//     1.31-1.53 (its longest wait from 9-11 to 77-84 ms, which the run
//     queues of 9 goroutines on about one CPU dominate), the rest within
//     noise.
//   - A queued waiter can give up when its context is done (the killable
//     waits); if the lock was handed to it meanwhile it passes it on.
//   - Unlocking a lock that is not held is detected, reported by the caller,
//     and leaves the state alone (sync.Mutex would be a fatal error).
type core struct {
	state atomic.Int64
	q     atomic.Pointer[waitq] // allocated at the first contention
}

// The state word. A writer holding the lock alone with nobody queued is
// exactly cWriter, and a free lock nobody waits for is 0: the fast paths
// are one compare-and-swap each (Mutex.Unlock's CAS(cWriter, 0) included).
const (
	cWriter = 1 << 0 // a writer holds it
	// cWaiters: the queue is not empty (MUTEX_FLAG_WAITERS,
	// RWSEM_FLAG_WAITERS). It sends every release the slow way.
	cWaiters = 1 << 1
	// cHandoff: the lock is reserved for the first waiter
	// (MUTEX_FLAG_HANDOFF, RWSEM_FLAG_HANDOFF): nobody steals it, and the
	// release hands it over. Set only with cWaiters.
	cHandoff = 1 << 2
	// cWoken: the first waiter is a writer woken to try the lock that has
	// not tried yet. A release then wakes nobody and skips the wait lock:
	// the kernel's second wake of a task that is already running
	// (try_to_wake_up of a TASK_RUNNING task) does nothing either. Set only
	// with cWaiters.
	cWoken  = 1 << 3
	cReader = 1 << 4 // the rest: the number of readers holding it

	cHeld = ^int64(cWaiters | cHandoff | cWoken) // the holders: writer bit and reader count
	// cReadFail makes a reader take the slow way: RWSEM_READ_FAILED_MASK.
	cReadFail = cWriter | cWaiters | cHandoff

	// maxReaderWake bounds the readers one release hands the lock to, like
	// the kernel's MAX_READERS_WAKEUP.
	maxReaderWake = 256
	// rwsemWaitTimeout is RWSEM_WAIT_TIMEOUT (DIV_ROUND_UP(HZ, 250)
	// jiffies, 4 ms at any HZ up to 250 and a jiffy above): how long an
	// rwsem waiter lets others steal the lock before it sets the handoff bit.
	rwsemWaitTimeout = 4e6 // ns
)

// lockMode says which of the kernel's slow paths a waiter follows.
type lockMode uint8

const (
	// mutexLock is __mutex_lock_common: spin, steal, and set the handoff
	// bit after the first wake that fails to take the lock.
	mutexLock lockMode = iota
	// rwsemWrite is rwsem_down_write_slowpath: as a mutex, but the handoff
	// bit waits for RWSEM_WAIT_TIMEOUT.
	rwsemWrite
	// rwsemRead is rwsem_down_read_slowpath: no spinning (v6.12 readers do
	// not spin), steal only a free lock, and be handed the lock by a release.
	rwsemRead
)

// waitq is the part of a lock only contention needs, out of line so that
// an uncontended lock stays two words.
type waitq struct {
	mu  sync.Mutex // the kernel's wait_lock
	l   list.List[waiter]
	osq atomic.Uint32 // the spinners' queue (the kernel's lock->osq), spin.go
}

type waiter struct {
	links   list.Links[waiter]
	write   bool
	granted atomic.Bool // handed the lock: the kernel's waiter.task = NULL, or a handoff
	start   int64       // nanotime when queued, for RWSEM_WAIT_TIMEOUT
	// ch carries the wake-ups: a hand-over (granted set first) or, to a
	// writer at the head, a wake to try the lock (cWoken set with it).
	// Tokens are sent under q.mu, only to queued waiters; at most one is
	// ever outstanding (a writer is woken to try only while no handoff is
	// pending, and a handoff hands it the lock instead; readers are only
	// handed it), so a waiter goes back to the pool with an empty channel.
	ch chan struct{}
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan struct{}, 1)} }}

func (c *core) queue() *waitq {
	if q := c.q.Load(); q != nil {
		return q
	}
	c.q.CompareAndSwap(nil, new(waitq))
	return c.q.Load()
}

// tryLock takes the write side if nobody holds it and no handoff is
// pending: mutex_trylock, which may steal the lock from queued waiters
// (__mutex_trylock ignores MUTEX_FLAG_WAITERS). Mutex.Lock inlines it, so
// that a locker steals before it takes the whole way; the call in the
// failure branch left a validated Mutex pair at 206 instructions (207
// before; cachegrind) and cost the pair with validation off one (51 -> 52:
// Lock spills its receiver earlier).
func (c *core) tryLock() bool { return c.state.CompareAndSwap(0, cWriter) || c.trySteal() }

// trySteal is tryLock with somebody queued: the lock is free and not
// reserved for the first waiter. Out of line, so that the fast paths that
// inline tryLock stay as small as they were.
//
//go:noinline
func (c *core) trySteal() bool {
	for {
		s := c.state.Load()
		if s&(cHeld|cHandoff) != 0 {
			return false
		}
		if c.state.CompareAndSwap(s, s|cWriter) {
			return true
		}
	}
}

// tryDownWrite takes the write side only if nobody holds it or waits for
// it: down_write_trylock (rwsem_write_trylock), which does not steal.
func (c *core) tryDownWrite() bool { return c.state.CompareAndSwap(0, cWriter) }

// tryRLock takes the read side if no writer holds it and nobody is queued:
// down_read_trylock.
func (c *core) tryRLock() bool {
	for {
		s := c.state.Load()
		if s&cReadFail != 0 {
			return false
		}
		if c.state.CompareAndSwap(s, s+cReader) {
			return true
		}
	}
}

// lock takes the write side of a mutex, waiting until ctx is done (nil:
// forever). dep, if not nil, is the lock's map, for lock_stat's contention
// count.
func (c *core) lock(ctx context.Context, dep *Map) error {
	if c.state.CompareAndSwap(0, cWriter) {
		return nil
	}
	return c.wait(ctx, mutexLock, dep)
}

// downWrite takes the write side of an rwsem: down_write.
func (c *core) downWrite(ctx context.Context, dep *Map) error {
	if c.state.CompareAndSwap(0, cWriter) {
		return nil
	}
	return c.wait(ctx, rwsemWrite, dep)
}

// rlock takes the read side, waiting until ctx is done (nil: forever).
func (c *core) rlock(ctx context.Context, dep *Map) error {
	if c.tryRLock() {
		return nil
	}
	return c.wait(ctx, rwsemRead, dep)
}

// lockSlow is the fast paths' way when their compare-and-swap failed: a
// mutex's write side (write), or an rwsem's read side.
func (c *core) lockSlow(ctx context.Context, write bool, dep *Map) error {
	if write {
		return c.wait(ctx, mutexLock, dep)
	}
	return c.wait(ctx, rwsemRead, dep)
}

// wait is the slow path of every lock: steal or spin, then queue and sleep.
//
// lock_stat counts a contention, and the wait until the lock is taken, as
// the kernel does: an rwsem whenever its trylock fails (LOCK_CONTENDED in
// down_read and down_write), a mutex only once spinning has failed and it
// queues (lock_contended in __mutex_lock_common); either once per
// acquisition, however often the waiter is woken.
func (c *core) wait(ctx context.Context, mode lockMode, dep *Map) error {
	var cw contention
	if mode != mutexLock && dep != nil && lockStat.Load() {
		cw = statContended(dep)
	}
	err := c.slow(ctx, mode, dep, &cw)
	if err == nil {
		statWaited(dep, cw)
	}
	return err
}

// slow is wait without lock_stat's wait time: steal or spin, queue, sleep.
// A mutex's contention is counted into cw once it queues.
func (c *core) slow(ctx context.Context, mode lockMode, dep *Map, cw *contention) error {
	write := mode != rwsemRead
	if write {
		if c.trySteal() || c.spin() {
			return nil
		}
	} else if c.tryReadSteal() {
		return nil
	}
	q := c.queue()
	q.mu.Lock()
	if c.enqueueOrTake(write) {
		q.mu.Unlock()
		return nil
	}
	w := waiterPool.Get().(*waiter)
	w.write = write
	w.granted.Store(false)
	if mode != mutexLock {
		w.start = nanotime()
	}
	q.push(w)
	if !write && c.state.Load()&cWriter == 0 {
		// rwsem_cond_wake_waiter: with no writer holding the lock, the
		// readers at the head (this one, maybe) are let in at once.
		c.wake(q)
	}
	q.mu.Unlock()

	if mode == mutexLock && dep != nil && lockStat.Load() {
		*cw = statContended(dep)
	}
	// The hung-task detector's view of the wait (kernel/hung_task.c).
	var hw *task.Waiter
	if task.Tracking() {
		hw = task.BeginWait(unsafe.Pointer(dep), 0)
	}
	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	for {
		select {
		case <-w.ch:
		case <-done:
			task.EndWait(hw)
			if c.cancel(q, w) {
				// Handed over just as we gave up: take it and pass it on.
				if write {
					c.unlock()
				} else {
					c.runlock()
				}
			}
			waiterPool.Put(w)
			return ctx.Err()
		}
		if w.granted.Load() {
			break // handed over: __mutex_handoff, rwsem_mark_wake
		}
		if !write {
			continue // readers are only ever handed the lock
		}
		// Woken as the first waiter: try the lock, or else maybe set the
		// handoff bit and spin until the holder hands it over.
		taken, handoff := c.tryFirst(w, mode)
		if taken {
			q.mu.Lock()
			c.dequeue(q, w)
			q.mu.Unlock()
			break
		}
		if handoff && c.spinGranted(w) {
			<-w.ch // the hand-over's token
			break
		}
	}
	task.EndWait(hw)
	waiterPool.Put(w)
	return nil
}

// tryReadSteal is rwsem_down_read_slowpath's reader lock stealing: a reader
// may take a lock nobody holds, waiters queued or not, unless a handoff is
// pending; a lock other readers hold it does not join, so that a stream of
// readers cannot starve a queued writer. Taking it with readers queued lets
// them in too (rwsem_mark_wake, RWSEM_WAKE_READ_OWNED).
func (c *core) tryReadSteal() bool {
	for {
		s := c.state.Load()
		if s&(cHeld|cHandoff) != 0 {
			return false
		}
		if c.state.CompareAndSwap(s, s+cReader) {
			if s&cWaiters != 0 {
				q := c.q.Load()
				q.mu.Lock()
				c.wake(q)
				q.mu.Unlock()
			}
			return true
		}
	}
}

// enqueueOrTake, with the wait lock held, takes the lock if it became free
// meanwhile (the trylock __mutex_lock_common makes once it holds wait_lock;
// the empty-queue check of rwsem_down_read_slowpath) or else marks the lock
// contended, for the caller to queue. q.mu held.
func (c *core) enqueueOrTake(write bool) bool {
	for {
		s := c.state.Load()
		var ns int64
		switch {
		case write && s&(cHeld|cHandoff) == 0:
			ns = s | cWriter
		case !write && s&(cWriter|cWaiters) == 0:
			ns = s + cReader
		case s&cWaiters != 0:
			return false
		default:
			if c.state.CompareAndSwap(s, s|cWaiters) {
				return false
			}
			continue
		}
		if c.state.CompareAndSwap(s, ns) {
			return true
		}
	}
}

// tryFirst is a writer's try when woken at the head of the queue: take the
// lock if nobody holds it; else clear cWoken, and set the handoff bit if the
// mode says it has waited long enough (__mutex_trylock_or_handoff with
// first set; rwsem_try_write_lock past waiter.timeout).
func (c *core) tryFirst(w *waiter, mode lockMode) (taken, handoff bool) {
	late := mode == mutexLock
	for {
		s := c.state.Load()
		if s&cHeld == 0 {
			if c.state.CompareAndSwap(s, (s|cWriter)&^(cWoken|cHandoff)) {
				return true, false
			}
			continue
		}
		if !late {
			late = nanotime()-w.start >= rwsemWaitTimeout
		}
		ns := s &^ cWoken
		if late {
			ns |= cHandoff
		}
		if c.state.CompareAndSwap(s, ns) {
			return false, late
		}
	}
}

// dequeue takes w, which took the lock itself, out of the queue. q.mu held.
func (c *core) dequeue(q *waitq, w *waiter) {
	q.remove(w)
	if q.l.Empty() {
		c.state.And(^int64(cWaiters | cHandoff | cWoken))
	}
}

// cancel takes w, whose context is done, out of the queue (the err path of
// __mutex_lock_common, rwsem_del_wake_waiter). It reports true if the lock
// was handed to w first: the caller holds it then, and releases it.
func (c *core) cancel(q *waitq, w *waiter) bool {
	q.mu.Lock()
	if w.granted.Load() {
		q.mu.Unlock()
		<-w.ch
		return true
	}
	first := q.front() == w
	q.remove(w)
	select {
	case <-w.ch: // a wake that crossed the cancellation
	default:
	}
	if q.l.Empty() {
		c.state.And(^int64(cWaiters | cHandoff | cWoken))
	} else if first {
		// A wake meant for w goes to the new head, and readers queued
		// behind a writer may be let in now. A pending handoff stays, for
		// the new head, as __mutex_remove_waiter leaves the flags to a
		// non-empty queue.
		c.state.And(^int64(cWoken))
		c.wake(q)
	}
	q.mu.Unlock()
	return false
}

// unlock releases the write side; false if it was not write-locked.
func (c *core) unlock() bool {
	if c.state.CompareAndSwap(cWriter, 0) {
		return true
	}
	return c.unlockSlow()
}

// unlockSlow is __mutex_unlock_slowpath and up_write's rwsem_wake.
func (c *core) unlockSlow() bool {
	for {
		s := c.state.Load()
		if s&cWriter == 0 {
			return false
		}
		if s&cWaiters != 0 && s&(cWoken|cHandoff) != cWoken {
			break
		}
		// Nobody queued, or the first waiter is awake and about to try.
		if c.state.CompareAndSwap(s, s&^cWriter) {
			return true
		}
	}
	q := c.q.Load()
	q.mu.Lock()
	woke := c.release(q, cWriter)
	q.mu.Unlock()
	if woke {
		runtime.Gosched()
	}
	return true
}

// runlock releases one reader; false if no reader held it.
func (c *core) runlock() bool { return c.tryRUnlock() || c.runlockSlow() }

// tryRUnlock is runlock's inlinable case: a reader leaving with nobody
// queued. It reports false, having changed nothing, in every other case.
func (c *core) tryRUnlock() bool {
	s := c.state.Load()
	return s != 0 && s&(cWriter|cWaiters) == 0 && c.state.CompareAndSwap(s, s-cReader)
}

// runlockSlow is up_read: the last reader out wakes the queue.
func (c *core) runlockSlow() bool {
	for {
		s := c.state.Load()
		if s < cReader {
			return false
		}
		ns := s - cReader
		if ns&cHeld == 0 && ns&cWaiters != 0 && ns&(cWoken|cHandoff) != cWoken {
			break
		}
		if c.state.CompareAndSwap(s, ns) {
			return true
		}
	}
	q := c.q.Load()
	q.mu.Lock()
	woke := c.release(q, cReader)
	q.mu.Unlock()
	if woke {
		runtime.Gosched()
	}
	return true
}

// release drops hold (cWriter or one cReader) with waiters queued, and
// wakes the queue: a writer at the head is woken to try with the release
// itself (cWoken set in the same step, so a locker stealing the lock in
// between cannot make the release skip the wake and starve it), and what
// else is due is done by wake. q.mu held.
func (c *core) release(q *waitq, hold int64) bool {
	for {
		s := c.state.Load()
		ns := s - hold
		if h := q.front(); h != nil && h.write && ns&(cHeld|cHandoff|cWoken) == 0 {
			if c.state.CompareAndSwap(s, ns|cWoken) {
				h.wake()
				return true
			}
			continue
		}
		if c.state.CompareAndSwap(s, ns) {
			break
		}
	}
	return c.wake(q)
}

// downgrade turns the caller's write hold into a read hold, atomically, and
// lets queued readers in with it (downgrade_write, rwsem_downgrade_wake);
// false if it was not write-locked.
func (c *core) downgrade() bool {
	for {
		s := c.state.Load()
		if s&cWriter == 0 {
			return false
		}
		if c.state.CompareAndSwap(s, s-cWriter+cReader) {
			if s&cWaiters != 0 {
				q := c.q.Load()
				q.mu.Lock()
				c.wake(q)
				q.mu.Unlock()
			}
			return true
		}
	}
}

func (c *core) locked() bool  { return c.state.Load()&cHeld != 0 }
func (c *core) wlocked() bool { return c.state.Load()&cWriter != 0 }

// wake gives the head of the queue what the state allows (rwsem_mark_wake,
// __mutex_handoff). A writer at the head: if nobody holds the lock, it is
// handed over if a handoff is pending, or else woken to try unless it is
// awake already. Readers at the head: if no writer holds the lock, it is
// handed to every queued reader, up to maxReaderWake; if a writer does and
// the head has waited RWSEM_WAIT_TIMEOUT, the handoff bit is set so that
// the writer's release lets them in. q.mu held.
func (c *core) wake(q *waitq) bool {
	for {
		h := q.front()
		if h == nil {
			return false
		}
		s := c.state.Load()
		if h.write {
			if s&cHeld != 0 {
				return false // its holders' release wakes it
			}
			if s&cHandoff != 0 {
				ns := (s | cWriter) &^ (cHandoff | cWoken)
				if h.next() == nil {
					ns &^= cWaiters
				}
				if !c.state.CompareAndSwap(s, ns) {
					continue
				}
				q.remove(h)
				h.grant()
				return true
			}
			if s&cWoken != 0 {
				return false
			}
			if c.state.CompareAndSwap(s, s|cWoken) {
				h.wake()
				return true
			}
			continue
		}
		if s&cWriter != 0 {
			if s&cHandoff == 0 && nanotime()-h.start >= rwsemWaitTimeout &&
				!c.state.CompareAndSwap(s, s|cHandoff) {
				continue
			}
			return false
		}
		n, others := 0, false
		for w := h; w != nil; w = w.next() {
			if w.write || n == maxReaderWake {
				others = true
			} else {
				n++
			}
		}
		// Readers woken, the handoff has done its work (rwsem_mark_wake
		// drops RWSEM_FLAG_HANDOFF); a writer left at the head sleeps until
		// the last of them leaves.
		ns := (s + int64(n)*cReader) &^ (cHandoff | cWoken)
		if !others {
			ns &^= cWaiters
		}
		if !c.state.CompareAndSwap(s, ns) {
			continue
		}
		for w, k := h, 0; w != nil && k < n; {
			next := w.next()
			if !w.write {
				q.remove(w)
				w.grant()
				k++
			}
			w = next
		}
		return true
	}
}

// grant hands w the lock; wake wakes it to try. q.mu held. A token already
// in the channel does as well as a second one would (see waiter.ch).
func (w *waiter) grant() {
	w.granted.Store(true)
	w.wake()
}

func (w *waiter) wake() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

func (q *waitq) push(w *waiter) { q.l.PushBack(w, &w.links) }

func (q *waitq) remove(w *waiter) { q.l.Remove(&w.links) }

// front returns the first waiter, or nil.
func (q *waitq) front() *waiter {
	if k := q.l.Front(); k != nil {
		return k.Elem()
	}
	return nil
}

// next returns the waiter queued after w, or nil.
func (w *waiter) next() *waiter {
	if k := w.links.Next(); k != nil {
		return k.Elem()
	}
	return nil
}

// noCopy makes go vet's copylocks check flag copies.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
