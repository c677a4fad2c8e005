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
// lock from a valid one. The kernel's rwsem shape fits in one word instead:
//
//   - bit 0: a writer holds the lock; bit 1: somebody is queued;
//     the rest: the number of readers holding it.
//   - Writers are fair, as the kernel's rwsem: once somebody is queued, new
//     readers and writers queue behind it instead of barging in.
//   - Release hands the lock over directly (the kernel's handoff): the
//     releaser sets the state on behalf of the head writer, or of every
//     queued reader, and wakes them; nobody wakes up to find it taken.
//   - A queued waiter can give up when its context is done (the killable
//     waits); if the lock was handed to it meanwhile it keeps it.
//   - Unlocking a lock that is not held is detected, reported by the caller,
//     and leaves the state alone (sync.Mutex would be a fatal error).
type core struct {
	state atomic.Int64
	q     atomic.Pointer[waitq]
}

const (
	cWriter  = 1 << 0
	cWaiters = 1 << 1
	cReader  = 1 << 2
	// maxReaderWake bounds the readers one release hands the lock to, like
	// the kernel's MAX_READERS_WAKEUP.
	maxReaderWake = 256
)

type waitq struct {
	mu sync.Mutex
	l  list.List[waiter] // FIFO
}

type waiter struct {
	links   list.Links[waiter]
	write   bool
	granted bool
	ch      chan struct{}
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan struct{}, 1)} }}

func (c *core) queue() *waitq {
	if q := c.q.Load(); q != nil {
		return q
	}
	c.q.CompareAndSwap(nil, new(waitq))
	return c.q.Load()
}

// word is the state word for the atomic functions, which Mutex's inlined
// fast paths use because the inliner prices atomic.Int64's methods higher
// (atomic.Int64 is its word and zero-size fields).
func (c *core) word() *int64 { return (*int64)(unsafe.Pointer(&c.state)) }

// tryLock takes the write side if it is free and nobody is queued.
func (c *core) tryLock() bool { return c.state.CompareAndSwap(0, cWriter) }

// tryRLock takes the read side if no writer holds it and nobody is queued.
func (c *core) tryRLock() bool {
	for {
		s := c.state.Load()
		if s&(cWriter|cWaiters) != 0 {
			return false
		}
		if c.state.CompareAndSwap(s, s+cReader) {
			return true
		}
	}
}

// lock takes the write side, waiting until ctx is done (nil: forever).
// dep, if not nil, is the lock's map, for lock_stat's contention count.
func (c *core) lock(ctx context.Context, dep *Map) error {
	if c.state.CompareAndSwap(0, cWriter) {
		return nil
	}
	return c.lockSlow(ctx, true, dep)
}

// rlock takes the read side, waiting until ctx is done (nil: forever).
func (c *core) rlock(ctx context.Context, dep *Map) error {
	if c.tryRLock() {
		return nil
	}
	return c.lockSlow(ctx, false, dep)
}

func (c *core) lockSlow(ctx context.Context, write bool, dep *Map) error {
	// Optimistic spinning, briefly: the holder is likely running.
	for range 3 {
		runtime.Gosched()
		if write && c.tryLock() || !write && c.tryRLock() {
			return nil
		}
	}
	q := c.queue()
	q.mu.Lock()
	for {
		s := c.state.Load()
		if s&cWaiters == 0 {
			if write && s == 0 {
				if c.state.CompareAndSwap(0, cWriter) {
					q.mu.Unlock()
					return nil
				}
				continue
			}
			if !write && s&cWriter == 0 {
				if c.state.CompareAndSwap(s, s+cReader) {
					q.mu.Unlock()
					return nil
				}
				continue
			}
			if !c.state.CompareAndSwap(s, s|cWaiters) {
				continue
			}
		}
		break
	}
	w := waiterPool.Get().(*waiter)
	w.write, w.granted = write, false
	q.push(w)
	q.mu.Unlock()

	// lock_contended: queued, so it waits (as __mutex_lock_common counts a
	// contention only once spinning has failed).
	var cw contention
	if dep != nil && lockStat.Load() {
		cw = statContended(dep)
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
	select {
	case <-w.ch:
		task.EndWait(hw)
		waiterPool.Put(w)
		statWaited(dep, cw)
		return nil
	case <-done:
	}
	task.EndWait(hw)
	q.mu.Lock()
	if w.granted {
		// Handed over just as we gave up: the grant wins and the wait
		// succeeds. rwsem_down_read_slowpath rechecks waiter.task under
		// wait_lock and keeps a lock granted meanwhile rather than go to
		// out_nolock; rwsem_down_write_slowpath and __mutex_lock_common
		// try the lock before they look at the signal.
		q.mu.Unlock()
		<-w.ch
		waiterPool.Put(w)
		statWaited(dep, cw)
		return nil
	}
	q.remove(w)
	if q.l.Empty() {
		for {
			s := c.state.Load()
			if c.state.CompareAndSwap(s, s&^cWaiters) {
				break
			}
		}
	}
	c.grant(q) // the new head may be grantable now
	q.mu.Unlock()
	waiterPool.Put(w)
	return ctx.Err()
}

// unlock releases the write side; false if it was not write-locked.
func (c *core) unlock() bool {
	if c.state.CompareAndSwap(cWriter, 0) {
		return true
	}
	return c.unlockSlow()
}

func (c *core) unlockSlow() bool {
	for {
		s := c.state.Load()
		if s&cWriter == 0 {
			return false
		}
		if s&cWaiters == 0 {
			if c.state.CompareAndSwap(s, s&^cWriter) {
				return true
			}
			continue
		}
		break
	}
	q := c.q.Load()
	q.mu.Lock()
	for {
		s := c.state.Load()
		if c.state.CompareAndSwap(s, s&^cWriter) {
			break
		}
	}
	c.grant(q)
	q.mu.Unlock()
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

func (c *core) runlockSlow() bool {
	for {
		s := c.state.Load()
		if s < cReader {
			return false
		}
		ns := s - cReader
		if !c.state.CompareAndSwap(s, ns) {
			continue
		}
		if ns == cWaiters { // the last reader leaves a queue behind
			q := c.q.Load()
			q.mu.Lock()
			c.grant(q)
			q.mu.Unlock()
		}
		return true
	}
}

// downgrade turns the caller's write hold into a read hold, atomically, and
// lets queued readers in with it; false if it was not write-locked.
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
				c.grant(q)
				q.mu.Unlock()
			}
			return true
		}
	}
}

func (c *core) locked() bool  { return c.state.Load()&^cWaiters != 0 }
func (c *core) wlocked() bool { return c.state.Load()&cWriter != 0 }

// grant hands the lock to the head of the queue if its state allows: to the
// head writer if the lock is free, or to every queued reader (up to
// maxReaderWake) if the head is a reader and no writer holds it. q.mu held.
func (c *core) grant(q *waitq) {
	for !q.l.Empty() {
		s := c.state.Load()
		if q.front().write {
			if s&^cWaiters != 0 {
				return
			}
			w := q.front()
			ns := int64(cWriter)
			if w.links.Next() != nil {
				ns |= cWaiters
			}
			if !c.state.CompareAndSwap(s, ns) {
				continue
			}
			q.remove(w)
			w.granted = true
			w.ch <- struct{}{}
			return
		}
		if s&cWriter != 0 {
			return
		}
		n, others := 0, false
		for w := q.front(); w != nil; w = w.next() {
			if w.write || n == maxReaderWake {
				others = true
			} else {
				n++
			}
		}
		ns := s + int64(n)*cReader
		if others {
			ns |= cWaiters
		} else {
			ns &^= cWaiters
		}
		if !c.state.CompareAndSwap(s, ns) {
			continue
		}
		for w, k := q.front(), 0; w != nil && k < n; {
			next := w.next()
			if !w.write {
				q.remove(w)
				w.granted = true
				w.ch <- struct{}{}
				k++
			}
			w = next
		}
		return
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
