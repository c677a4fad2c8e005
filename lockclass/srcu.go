package lockclass

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/nonblock"
)

// gpCore is the grace-period engine RCU and SRCU share: readers count
// themselves in one of two counters, chosen by the current index; a grace
// period flips the index and waits for the other counter to drain, twice,
// so that a reader that read the index just before a flip and counted
// itself after is still waited for by the next grace period
// (kernel/rcu/srcutree.c's "flip twice"). Go's atomics are sequentially
// consistent: a reader counted after the drain was seen has begun after the
// update the grace period is for, and sees it.
//
// The counters are two words, not the kernel's per-CPU arrays: readers on
// many processors share one cache line (a cost the RCU figure in bench
// shows for one goroutine only).
type gpCore struct {
	idx atomic.Uint32
	cnt [2]atomic.Int64
	gp  sync.Mutex // srcu_gp_mutex: one grace period at a time
}

func (c *gpCore) readLock() uint8 {
	i := uint8(c.idx.Load() & 1)
	c.cnt[i].Add(1)
	return i
}

func (c *gpCore) readUnlock(i uint8) { c.cnt[i&1].Add(-1) }

// synchronize waits for every reader that began before it to finish.
func (c *gpCore) synchronize() {
	c.gp.Lock()
	defer c.gp.Unlock()
	for range 2 {
		old := c.idx.Add(1) - 1
		c.drain(&c.cnt[old&1])
	}
}

// waitForReaders is synchronize for a caller that sleeps on it, as
// synchronize_rcu sleeps uninterruptibly in wait_for_completion: the wait
// shows to the hung-task detector (kernel/hung_task.c), so a reader that
// never leaves its section is reported with the waiter's stack. The
// call_rcu goroutines do not show: the kernel's RCU stall detector, not
// hung_task, watches its grace-period thread.
func (c *gpCore) waitForReaders() {
	if task.Tracking() {
		defer task.EndWait(task.BeginWait(unsafe.Pointer(c), 1))
	}
	c.synchronize()
}

func (c *gpCore) drain(n *atomic.Int64) {
	for i := 0; n.Load() != 0; i++ {
		if i < 50 {
			runtime.Gosched()
			continue
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// callbacks runs call_rcu/call_srcu callbacks each on a goroutine of its own
// after a grace period, in an atomic section as the kernel's softirq
// callbacks run; barrier waits for those queued (rcu_barrier).
type callbacks struct{ wg sync.WaitGroup }

func (cb *callbacks) queue(sync func(), f func()) {
	cb.wg.Add(1)
	go func() {
		defer cb.wg.Done()
		sync()
		nonblock.StartAtomic()
		defer nonblock.EndAtomic()
		f()
	}()
}

// SRCU is the kernel's srcu_struct (include/linux/srcu.h): sleepable RCU,
// whose readers may block and whose grace periods wait only for readers of
// the same SRCU. ReadLock returns an index to pass to ReadUnlock.
//
// Lockdep: each SRCU has its own map (class keyed by the Init site, named
// as WithName says), taken for recursive read by ReadLock
// (srcu_lock_acquire, lock_map_acquire_read) and synced exclusively by
// Synchronize (srcu_lock_sync, lock_map_sync), so Synchronize inside a read
// section of the same SRCU is a reported deadlock ("possible recursive
// locking detected"), and so is a lock held across Synchronize that a
// reader takes ("possible circular locking dependency detected").
//
// The zero value is ready to use (keyed by the site of its first use); Init
// (init_srcu_struct) names it. An SRCU must not be copied after first use.
type SRCU struct {
	_   noCopy
	gp  gpCore
	cb  callbacks
	dep Map
}

var srcuDefaults = []Option{WithName("srcu")}

func (s *SRCU) lockdepMap() *Map { return &s.dep }

// Init initialises the SRCU: init_srcu_struct. It must not be in use.
//
//go:noinline
func (s *SRCU) Init(opts ...Option) {
	pc := stack.ReturnPC()
	CheckNoLocksFreed(unsafe.Pointer(s), unsafe.Sizeof(*s))
	s.dep.init(pc, srcuDefaults, opts)
}

// ReadLock enters a read section and returns its index: srcu_read_lock.
// The section may sleep.
//
//go:noinline
func (s *SRCU) ReadLock() int {
	acquire(&s.dep, 0, 2, 0, nil, stack.ReturnPC(), srcuDefaults)
	return int(s.gp.readLock())
}

// ReadUnlock leaves the read section ReadLock(idx) entered: srcu_read_unlock.
func (s *SRCU) ReadUnlock(idx int) {
	releaseShared(&s.dep)
	s.gp.readUnlock(uint8(idx))
}

// Synchronize waits until every read section that began before it has
// ended: synchronize_srcu. It might sleep. Called inside a read section of
// the same SRCU it would wait for itself forever: lockdep reports it, and
// Synchronize then returns without waiting. Inside an RCU read section it
// is "WARNING: suspicious RCU usage". As __synchronize_srcu does, it
// validates first (srcu_lock_sync), then warns (RCU_LOCKDEP_WARN), then
// calls might_sleep.
//
//go:noinline
func (s *SRCU) Synchronize() {
	acquire(&s.dep, 0, 0, fSync, nil, stack.ReturnPC(), srcuDefaults)
	t := task.Lookup()
	self := t != nil && findHeld(t, &s.dep) >= 0
	if self || t != nil && t.RCUNest > 0 {
		rcuLockdepWarn(t, "synchronize_srcu", "Illegal synchronize_srcu() in same-type SRCU (or in RCU) read-side critical section")
	}
	nonblock.MightSleep()
	if self {
		return
	}
	s.gp.waitForReaders()
}

// Call runs f after a grace period, on a goroutine of its own and in an
// atomic section: call_srcu. Barrier waits for the callbacks queued.
func (s *SRCU) Call(f func()) { s.cb.queue(s.gp.synchronize, f) }

// Barrier waits for every callback Call queued to have run: srcu_barrier.
func (s *SRCU) Barrier() {
	nonblock.MightSleep()
	s.cb.wg.Wait()
}
