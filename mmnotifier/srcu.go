package mmnotifier

import (
	"context"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// srcuStruct is sleepable RCU for the notifier lists: callbacks run inside
// read sections that never block, and unregistration waits for every read
// section that might still see a notifier (synchronize_srcu) before it
// returns, so that no callback runs once Unregister has returned.
//
// Readers count themselves in one of two epochs, in a counter shard chosen
// by stack address, which tells goroutines apart (the kernel's per-CPU
// counters). A grace period flips the
// epoch, so new readers count in the other one, and waits until the old
// epoch's counters are all zero. A reader that read the old epoch but
// counted itself only after the wait looked at its shard started its
// section after the flip, hence after the update the grace period is for:
// Go's atomics are sequentially consistent, so it sees the update.
//
// Lockdep: read sections are annotated as recursive-read trylocks of the
// "srcu" map and grace periods as lock_sync on it, so srcu_read_lock
// followed by synchronize_srcu on one goroutine (Unregister from inside a
// callback) is reported, and so is a lock held across a grace period that a
// callback takes. Invalidation walks, which hold the notifier map, count
// themselves without the annotation; a grace period takes the notifier map
// instead. See the package documentation for why.
type srcuStruct struct {
	// waiting counts the grace periods waiting for readers to drain. It is
	// the first field so that walkUnlock fits the inlining budget (cost 79
	// of 80; 81 as the fifth field): an invalidation with 1 notifier 814 ->
	// 793 instructions (cachegrind, AMD EPYC (Zen 3, KVM)).
	waiting atomic.Int32

	dep   *lockclass.Map
	epoch atomic.Uint32
	// shards points to a fixed array, so that picking one is a mask, with
	// no bounds check or slice length load: 801 -> 793 instructions an
	// invalidation with 1 notifier (cachegrind, AMD EPYC (Zen 3, KVM)). It
	// is allocated on its own, so that the shards are cache-line aligned and
	// share no line with the words every reader loads.
	shards *[srcuShards]srcuShard

	gp sync.Mutex // serialises grace periods (srcu_gp_mutex)
	wq nonblock.WaitQueue

	// pending counts the callbacks callSRCU queued and not yet run, for
	// barrier; pendingWQ is woken when it drops to zero.
	pending   atomic.Int64
	pendingWQ nonblock.WaitQueue
}

// srcuShards is the number of counter shards, a power of two: as many as
// 2*GOMAXPROCS on a 64-processor machine, so that goroutines rarely share
// one's cache line.
const srcuShards = 128

type srcuShard struct {
	readers [2]atomic.Int64
	_       [48]byte // one shard per cache line
}

// srcu is the kernel's DEFINE_STATIC_SRCU(srcu) in mm/mmu_notifier.c: one
// for every address space. It holds no state between grace periods beyond
// reader counts that return to zero, so tests need no reset. It is a value,
// not a pointer, so that the walks address its fields directly (one load
// less a use).
var srcu = srcuStruct{dep: lockclass.NewMap("srcu"), shards: new([srcuShards]srcuShard)}

// A read section is known by the counter it counted itself in: its shard's
// counter of the epoch it read. The pointer keeps the shard if the stack
// moves, and is all the invalidation walks carry across their callbacks.

// readLock enters a read section: srcu_read_lock. It never blocks.
func (s *srcuStruct) readLock() *atomic.Int64 {
	c := s.walkLock()
	s.dep.TryAcquireRead()
	return c
}

// readUnlock leaves the section readLock entered: srcu_read_unlock.
func (s *srcuStruct) readUnlock(c *atomic.Int64) {
	s.dep.Release()
	s.walkUnlock(c)
}

// walkLock enters a read section for an invalidation walk, which holds the
// notifier map already: the section is counted but not annotated (see
// synchronize). Its counter is picked by stack address, which tells
// goroutines apart for the price of a shift.
func (s *srcuStruct) walkLock() *atomic.Int64 {
	var here byte
	c := &s.shards[uintptr(unsafe.Pointer(&here))>>13%srcuShards].readers[s.epoch.Load()&1]
	c.Add(1)
	return c
}

// walkUnlock leaves the section walkLock entered. It wakes a grace period
// waiting for the section's epoch to drain.
func (s *srcuStruct) walkUnlock(c *atomic.Int64) {
	if c.Add(-1) == 0 && s.waiting.Load() != 0 {
		s.wake()
	}
}

// wake is out of line so that the walks inline walkUnlock.
//
//go:noinline
func (s *srcuStruct) wake() { s.wq.WakeUp() }

// synchronize waits until every read section that started before it has
// ended: synchronize_srcu. It may sleep.
//
// For the validator it is lock_sync on the "srcu" map, which read sections
// outside invalidations hold (release and young callbacks), and an
// acquisition of the notifier map, which invalidation callbacks run under:
// waiting for them is waiting for its holders, as for
// mmu_interval_notifier_remove. Their own read sections are left
// unannotated, which costs a third of an invalidation less.
//
// Called inside a read section it could only deadlock: the validator
// reports it (recursive locking on a map the goroutine holds) and it
// returns at once instead, so the program keeps going.
func (s *srcuStruct) synchronize() {
	inside := holds(s.dep) || holds(gfp.NotifierMap)
	gfp.NotifierMap.Acquire()
	gfp.NotifierMap.Release()
	s.dep.Sync()
	if inside {
		return
	}
	s.gp.Lock()
	defer s.gp.Unlock()
	old := s.epoch.Add(1)&1 ^ 1
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	s.wq.Wait(context.Background(), func() bool { return s.drained(old) }) //nolint:errcheck // no context to cancel
}

// holds reports whether the calling goroutine holds m, as far as the lock
// validator followed it.
func holds(m *lockclass.Map) bool {
	if t := task.Lookup(); t != nil {
		for i := range t.Lockdep.Held {
			if t.Lockdep.Held[i].Instance == unsafe.Pointer(m) {
				return true
			}
		}
	}
	return false
}

// drained reports whether no read section of epoch e is running.
func (s *srcuStruct) drained(e uint32) bool {
	for i := range s.shards {
		if s.shards[i].readers[e].Load() != 0 {
			return false
		}
	}
	return true
}

// callSRCU runs fn after a grace period, on a goroutine of its own:
// call_srcu. fn must not sleep.
func (s *srcuStruct) callSRCU(fn func()) {
	s.pending.Add(1)
	go func() {
		s.synchronize()
		fn()
		if s.pending.Add(-1) == 0 {
			s.pendingWQ.WakeUp()
		}
	}()
}

// barrier waits for a grace period and for every callback callSRCU queued
// before it: srcu_barrier.
func (s *srcuStruct) barrier() {
	s.synchronize()
	s.pendingWQ.Wait(context.Background(), func() bool { return s.pending.Load() == 0 }) //nolint:errcheck // no context to cancel
}
