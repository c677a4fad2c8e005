//go:build !krules_nolockdep

package lockclass

import (
	"sync/atomic"
	"unsafe"

	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/nonblock"
)

// This file is the cached path of an acquisition and a release, with the
// lock paths that spell it out inline (Mutex.Lock/Unlock, RWSem.RLock/
// RUnlock, Map.Acquire/Release) side by side. Each tier is there for the
// figure beside it. The figures are cachegrind's instruction counts a pair
// (deterministic; the bench figure "Mutex Lock+Unlock", loop included) and
// nanoseconds from an AMD EPYC (Zen 3 "Milan", KVM, 2 vCPUs), whose
// timings swing up to 2x with the host's load while sync.Mutex's, bound by
// its two locked instructions, barely move: a code path pays for every
// instruction, so instructions are what the design saves.
//
//   - One quick tier (quickKey): the acquisition repeats the chain m's last
//     cached acquisition made (the per-map memo, m.lastChain, which holds
//     the one-lock chain too), tested with one OR of everything that sends
//     an acquisition the slower way. It replaced two tiers, a one-lock
//     chain key precomputed per class and then the memo, whose tests were
//     made twice on a nested lock: with the push below, a pair 247 -> 211
//     instructions, 21 -> 16.7 ns (sync.Mutex 5.1 ns; min of 40 runs).
//   - The push writes only what a cached acquisition sets (pushQuick): the
//     slots past the top keep their counts zero, and an inlined push
//     writes field by field (a composite literal is built on the stack and
//     copied with 16-byte moves that stall on store forwarding).
//   - An uncontended Mutex.Lock takes the lock first and annotates after,
//     using the last holder's record (m.own.t) as a guess at ours, which
//     spares the task-table walk; the guess survives a slow release too.
//     RWSem.RLock likewise, without the guess (readers are many), and
//     RWSem.RUnlock pops its own top entry and releases a reader with
//     nobody queued inline (tryRUnlock).
//   - Mutex.Lock and Unlock are inlinable wrappers around the validated
//     way, for validation off (figure beside Lock).
//   - lock_stat costs the quick tier one load and branch while off; on, a
//     stamped entry is released by releaseStamped without the generic slow
//     release: a lock_stat pair 700 -> 397 instructions.
//   - No instruction a cached acquisition does not need: SiteID's unknown
//     id (0) is resolved on the miss paths only, the guess and the head
//     lookups return the record rather than a bool tested again, the push
//     loads the stack once (one bounds check), and a release tests the
//     record for emptiness only at depth 0 (popHeld): a Mutex pair 231 ->
//     219 instructions, 3 nested 681 -> 618, an RWSem read pair 238 -> 230.
//
// What is left of a pair (about 219 instructions against sync.Mutex's 19)
// is the kernel's own bookkeeping: two reads of the goroutine id (the
// owner check at Unlock is DEBUG_MUTEXES'), the record claimed and released
// so that a goroutine's record exists only while non-empty, the chain key,
// the held-lock entry pushed and popped. Before the last tier it came to
// 3.3x sync.Mutex when the host was quiet and near 5x when it was not.
//
// The compiled-out build replaces this file with fastpath_nolockdep.go.

// The cached path of an acquisition: if the class is current and the chain
// the acquisition makes was validated before, the entry is pushed with no
// lock, no allocation and no stack capture. It is the whole cost of a
// validated lock beyond the lock itself, so it does only what a cached chain
// still needs: the usage bits and the depth high-water mark were recorded
// when the chain was validated (the chain key includes the read mode); only
// a trylock, which skips validation, sets its usage here.
//
// The two commonest cases, a one-lock chain and the chain m's last cached
// acquisition made, are decided by quickKey, which the lock paths inline,
// and pushed by pushQuick; pushCached decides all of them.

// quickKey returns the key of the chain t makes by taking m (class c) in
// read mode read, and whether the acquisition can take the quick tiers: the
// class is current, the goroutine validates (busy, if not zero, is a sleeping
// lock's non-block or atomic section, which must go the whole way), there is
// room on the stack, and the chain is the one m's last
// cached acquisition made (pushCached remembers it in m.lastChain, the
// one-lock chain included). The depth needs no check: the chain, which
// includes its depth, was validated at that depth. Its tests are nested
// ifs: as one || chain they were materialised as a bool and tested again
// (a Mutex pair 227 -> 226 instructions, cachegrind, AMD EPYC (Zen 3, KVM)).
func quickKey(t *task.Task, m *Map, c *class, read uint8, busy int32) (uint64, bool) {
	if c != nil && len(t.Lockdep.Held) != cap(t.Lockdep.Held) {
		if c.state.Load()|uint32(busy|t.Lockdep.Off) == 0 {
			key := chainKeyMix(t.Lockdep.ChainKey, c.modes[read].id)
			return key, key == m.lastChain.Load()
		}
	}
	return 0, false
}

// pushQuick pushes the entry of a cached acquisition that makes chain key;
// the stack has room. The slots past the top of every held-lock stack keep
// NestLock, Stamp, References and PinCount zero (popTop pops only entries
// whose counts are zero and clears NestLock; truncateHeld and Lockdep's reap
// clear whole entries; every other push appends a whole entry), so the quick
// push writes only the fields a cached acquisition sets, one by one: a
// composite literal is built on the stack and copied with 16-byte moves that
// stall on store forwarding. The stack and the chain key are read once, into
// locals: through ld the index was tested against a reloaded length, a
// second bounds check, and the key was reloaded after the length's store
// (a Mutex pair 226 -> 223 instructions, cachegrind, AMD EPYC (Zen 3, KVM)).
func pushQuick(t *task.Task, m *Map, c *class, read uint8, pc uintptr, key uint64) {
	ld := &t.Lockdep
	held, prev := ld.Held, ld.ChainKey
	n := len(held)
	held = held[:n+1]
	ld.Held = held // before any other store: only the length changes
	h := &held[n]
	h.Site, h.PrevChainKey = pc, prev
	h.Read, h.Trylock, h.Check = read, false, true
	h.Instance, h.Class, h.Label = unsafe.Pointer(m), unsafe.Pointer(c), classLabel
	ld.ChainKey = key
	t.Publish() // for -race: a goroutine may return holding it
}

// stampQuick is lock_stat's one branch after a quick push (pushCached
// makes its own): the entry on top is stamped while lock_stat is on, so
// that its release counts the acquisition and its hold time. Mutex.Lock,
// RWSem.RLock, Map.Acquire and acquireQuick spell the branch out instead,
// with statAcquired called directly: through stampQuick a Mutex pair went
// 217 -> 218 instructions, with lock_stat on 420 -> 429, an RWSem read pair
// 225 -> 228 and a signalling section 258 -> 260 (cachegrind, AMD EPYC
// (Zen 3, KVM)).
func stampQuick(t *task.Task) {
	if lockStat.Load() {
		stampTop(t)
	}
}

// stampTop stamps t's top entry. Out of line, so that the branch inlined
// into the ww paths spills nothing: WWMutex 8 in one ctx 1893 -> 1872
// instructions with it (cachegrind, AMD EPYC (Zen 3, KVM)).
//
//go:noinline
func stampTop(t *task.Task) { statAcquired(t, &t.Lockdep.Held[len(t.Lockdep.Held)-1]) }

// uncheckedKey is the chain key lockAcquire gives an acquisition of class
// c in mode read on top of t's stack.
func uncheckedKey(t *task.Task, c *class, read uint8) uint64 {
	if len(t.Lockdep.Held) == 0 {
		return c.modes[read].headKey // the empty stack's chain
	}
	return chainKeyMix(t.Lockdep.ChainKey, c.modes[read].id)
}

// uncheckedQuick reports whether an acquisition with check = 0 (such as
// rcu_lock_acquire's) of a map of class c may be pushed by t without the
// whole way (pushQuick under uncheckedKey, then Check cleared): the class
// is current and t's stack has room below the depth high-water mark, the
// one statistic the push would otherwise move. Nothing is validated for
// such an acquisition (__lock_acquire validates only checked ones), so no
// cached chain is needed.
func uncheckedQuick(t *task.Task, c *class) bool {
	if c == nil || c.state.Load()|uint32(t.Lockdep.Off) != 0 {
		return false
	}
	n := len(t.Lockdep.Held)
	return n != cap(t.Lockdep.Held) && int32(n) < c.g.maxDepth.Load()
}

// pushCached takes the cached path if it can and reports whether it did.
func pushCached(t *task.Task, m *Map, c *class, read uint8, try bool, pc uintptr) bool {
	if c == nil || c.state.Load() != 0 || t.Lockdep.Off != 0 {
		return false
	}
	n := len(t.Lockdep.Held)
	if n >= MaxLockDepth-1 || n == cap(t.Lockdep.Held) {
		return false // the slow path checks the depth and grows the stack
	}
	var key uint64
	if n == 0 {
		key = c.modes[read].headKey
		if !try && !c.modes[read].head.Load() {
			return false
		}
		if !try && key != m.lastChain.Load() {
			m.lastChain.Store(key)
		}
	} else {
		key = chainKeyMix(t.Lockdep.ChainKey, c.modes[read].id)
		if !try && key != m.lastChain.Load() {
			if !c.g.chains.Load().has(key) {
				return false
			}
			m.lastChain.Store(key)
			if int32(n) >= c.g.maxDepth.Load() {
				c.g.noteDepth(n + 1)
			}
		}
	}
	if try {
		c.markUsage(read, true, false)
	}
	pushQuick(t, m, c, read, pc, key)
	h := &t.Lockdep.Held[n]
	h.Trylock = try
	if lockStat.Load() {
		statAcquired(t, h)
	}
	return true
}

// Lock locks m: mutex_lock.
//
// With validation off, an uncontended Lock is a plain compare-and-swap,
// small enough to be inlined as sync.Mutex.Lock's is; everything else is
// lockValidated's. Inlined, the wrapper keeps the validated path at one
// call and spares the unvalidated one its call: the figure "Mutex,
// validation off" went from 52 to 32 instructions a pair (sync.Mutex: 19;
// cachegrind, AMD EPYC (Zen 3, KVM)), from 1.33-1.40x to 1.05-1.13x
// sync.Mutex in three go run ./bench runs. The wrappers' tests, and
// lockValidated's for a Lock that was not inlined, cost the validated pair
// 206 -> 231 instructions (4.5-5.3x -> 4.9-5.6x in the same runs).
func (m *Mutex) Lock() {
	if atomic.LoadUint32(&enabled.on) == 0 && atomic.CompareAndSwapInt64(m.core.word(), 0, cWriter) {
		return
	}
	m.lockValidated()
}

// mutexLockText is Lock's own code: a return address in it means that Lock
// was not inlined (a call through sync.Locker, a method value, a function
// too big to inline into), and its caller's site is one frame further.
// (Set in init: as a variable's initialiser it would depend on Lock, which
// reads it.)
var mutexLockText stack.Text

func init() { mutexLockText = stack.TextOf((*Mutex).Lock) }

// lockValidated is Lock's way in every case but the unvalidated fast one.
//
//go:noinline
func (m *Mutex) lockValidated() {
	if !enabled.Load() {
		if !m.core.tryLock() {
			m.core.lockSlow(nil, true, &m.dep)
		}
		return
	}
	id, pc := task.SiteID()
	if mutexLockText.Contains(pc) {
		pc = stack.OuterReturnPC()
	}
	// Uncontended, the lock is taken first and the cached path annotated
	// after: nothing blocked, and a cached chain has nothing to report.
	if !m.core.tryLock() {
		m.lockWhole(id, pc, false)
		return
	}
	// m.own.t, stable now that m is ours, is the last holder's record: a
	// guess at ours that spares the table walk. An id of 0 (SiteID's
	// "unknown") owns no record, so the guess misses and claim looks the id
	// up: the test is made only on a miss. That, and a Reclaim that returns
	// the record rather than a bool tested again, took a pair from 231 to 227
	// and then 223 -> 220 instructions (cachegrind, AMD EPYC (Zen 3, KVM)).
	t := task.Reclaim(m.own.t, id)
	if t == nil {
		t = m.own.claim(id)
		id = t.ID
	}
	c := m.dep.cache[0].Load()
	if key, ok := quickKey(t, &m.dep, c, 0, t.NonBlock|t.Preempt); ok {
		pushQuick(t, &m.dep, c, 0, pc, key)
		m.own.id = id
		if lockStat.Load() { // the one branch lock_stat costs while off
			statAcquired(t, &t.Lockdep.Held[len(t.Lockdep.Held)-1])
		}
		return
	}
	m.lockLocked(t, id, pc)
}

// lockLocked is Lock's way when the quick tiers did not apply, with m
// already taken: the rest of the cached path, or else the lock is given
// back and Lock goes the whole way, annotating first as lock_acquire does.
// It is out of line so that Lock keeps a small frame.
//
//go:noinline
func (m *Mutex) lockLocked(t *task.Task, id int64, pc uintptr) {
	cached := t.NonBlock|t.Preempt == 0
	if cached && pushCached(t, &m.dep, m.dep.cache[0].Load(), 0, false, pc) {
		m.own.id = id
		return
	}
	t.ReleaseIfEmpty()
	m.core.unlock()
	m.lockWhole(id, pc, cached)
}

// lockWhole is Lock's whole way, out of line so that the quick path keeps
// a small frame and returns from each tier without carrying flags: a
// Mutex pair went from 210.6 to 203.5 instructions (valgrind, cachegrind's
// count), 3 nested pairs from 600.7 to 588.6. tried says that the cached
// path was tried already, with the lock held.
//
//go:noinline
func (m *Mutex) lockWhole(id int64, pc uintptr, tried bool) {
	t := annotateSleep(&m.dep, 0, mutexDefaults, id, pc, tried)
	if !m.core.tryLock() {
		m.core.lockSlow(nil, true, &m.dep)
	}
	m.own.set(t)
}

// Unlock unlocks m: mutex_unlock. Unlocking a mutex the goroutine does not
// hold is reported as a bad unlock balance and, if it was not locked at
// all, leaves it alone.
//
// With validation off and no tracked holder it is a plain unlock, inlined
// as Lock's fast case is.
func (m *Mutex) Unlock() {
	if m.own.id|int64(atomic.LoadUint32(&enabled.on)) == 0 && atomic.CompareAndSwapInt64(m.core.word(), cWriter, 0) {
		return
	}
	m.unlockValidated()
}

// unlockValidated is Unlock's way in every case but the unvalidated fast
// one.
func (m *Mutex) unlockValidated() {
	if compiledIn && m.own.id != 0 {
		// The cached path: the caller is the owner and m is on top.
		id := task.GoID()
		if t := m.own.t; m.own.id == id {
			m.own.id = 0 // t stays: the next Lock's guess at its record
			if n := popHeld(t, &m.dep); n == 0 {
				t.ReleaseIfEmpty()
			} else if n < 0 {
				releaseSlow(&m.dep, t) // stamped, not on top, pinned
			}
			if !m.core.state.CompareAndSwap(cWriter, 0) {
				m.core.unlockSlow()
			}
			return
		}
		m.own.release(&m.dep)
	} else if compiledIn && enabled.Load() {
		releaseUntracked(&m.dep, m.core.wlocked())
	}
	m.core.unlock()
}

// RLock takes the read side: down_read.
//
//go:noinline
func (s *RWSem) RLock() {
	if !compiledIn || !enabled.Load() {
		if !s.core.tryRLock() {
			s.core.lockSlow(nil, false, &s.dep)
		}
		if compiledIn {
			s.dep.untracked.Add(1)
		}
		return
	}
	id, pc := task.SiteID()
	// Uncontended, the read side is taken first and the cached path
	// annotated after, as Mutex.Lock does (without its guess: readers are
	// many and not remembered). An id of 0 (SiteID's "unknown") heads no
	// bucket, so it is resolved only when ClaimHead misses, and RUnlock
	// likewise hands GoID's id to LookupHead untested: a read pair 4
	// instructions fewer (238 -> 234, cachegrind, AMD EPYC (Zen 3, KVM)).
	if !s.core.tryRLock() {
		s.rlockWhole(id, pc, false)
		return
	}
	t := task.ClaimHead(id)
	if t == nil {
		t = claimID(id)
		id = t.ID
	}
	c := s.dep.cache[0].Load()
	if key, ok := quickKey(t, &s.dep, c, 1, t.NonBlock|t.Preempt); ok {
		pushQuick(t, &s.dep, c, 1, pc, key)
		if lockStat.Load() {
			statAcquired(t, &t.Lockdep.Held[len(t.Lockdep.Held)-1])
		}
		return
	}
	s.rlockLocked(t, id, pc)
}

// rlockLocked is RLock's way when the quick tiers did not apply, as
// Mutex.lockLocked.
//
//go:noinline
func (s *RWSem) rlockLocked(t *task.Task, id int64, pc uintptr) {
	cached := t.NonBlock|t.Preempt == 0
	if cached && pushCached(t, &s.dep, s.dep.cache[0].Load(), 1, false, pc) {
		return
	}
	t.ReleaseIfEmpty()
	s.core.runlock()
	s.rlockWhole(id, pc, cached)
}

// annotateSleep is the annotation a sleeping lock's whole way makes before
// it may block, in the kernel's order: might_sleep, then lock_acquire of m
// in mode read (the cached path unless tried says it was tried already,
// else the validating one). id is the caller's, 0 if unknown. It returns
// the caller's record, or nil if the acquisition is not tracked.
func annotateSleep(m *Map, read uint8, defaults []Option, id int64, pc uintptr, tried bool) *task.Task {
	if id == 0 { // SiteID's "unknown"
		id = task.ID()
	}
	t := task.Claim(id)
	if t.NonBlock|t.Preempt != 0 {
		nonblock.MightSleep()
	}
	if tried || !pushCached(t, m, m.cache[0].Load(), read, false, pc) {
		t = acquireSlow(t, m, 0, read, fSleep, nil, pc, defaults)
	}
	return t
}

// rlockWhole is RLock's whole way, out of line as Mutex.lockWhole is: an
// RWSem read pair went from 246.2 to 235.9 instructions (cachegrind).
//
//go:noinline
func (s *RWSem) rlockWhole(id int64, pc uintptr, tried bool) {
	t := annotateSleep(&s.dep, 1, rwsemDefaults, id, pc, tried)
	if !s.core.tryRLock() {
		s.core.lockSlow(nil, false, &s.dep)
	}
	if t == nil {
		s.dep.untracked.Add(1)
	}
}

// RUnlock releases a read hold: up_read.
func (s *RWSem) RUnlock() {
	if compiledIn {
		t := task.LookupHead(task.GoID()) // GoID's "unknown", 0, heads no bucket
		if t == nil {
			t = task.Lookup()
		}
		if t != nil {
			if n := popHeld(t, &s.dep); n >= 0 {
				if n == 0 { // only depth 0 can leave the record empty
					t.ReleaseIfEmpty()
				}
				if !s.core.tryRUnlock() {
					s.core.runlockSlow()
				}
				return
			}
		}
		releaseSlow(&s.dep, t)
	}
	s.core.runlock()
}

// Acquire takes the map exclusively: lock_map_acquire (write, full check).
// The cached path's quick tiers are inline, as in Mutex.Lock; a map
// acquisition is never a sleep, so there is nothing to check before them.
// That spares the calls through acquireShared, acquire, task.Current and
// pushCached: the fs_reclaim and notifier maps are taken on every
// allocation under a lock and twice on every invalidation. With Release's
// inline pop, an invalidation with 1 notifier went from 139.8 to 123.8 ns
// (2 direct calls: 40-42 ns) and from 1057 to 852 instructions (cachegrind)
// on an Intel Xeon (Sapphire Rapids, KVM). It is acquireQuick spelled out
// for read mode 0, with the goroutine id and the caller's site read by one
// call (task.SiteID) rather than ReturnPC's and GoID's, and no call into
// acquireQuick: an invalidation with 1 notifier 784 -> 736 instructions
// (cachegrind, AMD EPYC (Zen 3, KVM)); with the id and validation tests
// nested, which one && made into a bool tested again, 718 -> 711 (and a
// signalling section, through acquireQuick, 265 -> 263).
//
//go:noinline
func (m *Map) Acquire() {
	id, pc := task.SiteID()
	if id != 0 {
		if enabled.Load() { // nested: an && made a bool of it
			if t := task.ClaimHead(id); t != nil {
				c := m.cache[0].Load()
				if key, ok := quickKey(t, m, c, 0, 0); ok {
					pushQuick(t, m, c, 0, pc, key)
					if lockStat.Load() {
						statAcquired(t, &t.Lockdep.Held[len(t.Lockdep.Held)-1])
					}
					return
				}
			}
		}
	}
	m.acquireShared(0, 0, pc)
}

// AcquireMightSleep is might_sleep() followed by Acquire, the way a
// sleeping path opens that holds a map across callbacks
// (mmu_notifier_invalidate_range_start and _end take the notifier map
// right after might_sleep): Acquire's quick tiers, whose one test of the
// record's sections (quickKey's busy) is also might_sleep's, so the
// goroutine id and the record are read once for both. Anything else goes
// nonblock.MightSleep's way, which reports as it always does, and then
// Acquire's whole way. Both of an invalidation's (start and end) use it: an
// invalidation with 1 notifier 712 -> 604 instructions (cachegrind, AMD
// EPYC (Zen 3, KVM)).
//
//go:noinline
func (m *Map) AcquireMightSleep() {
	id, pc := task.SiteID()
	if enabled.Load() {
		if t := task.ClaimHead(id); t != nil { // 0, "unknown", heads no bucket
			c := m.cache[0].Load()
			if key, ok := quickKey(t, m, c, 0, t.NonBlock|t.Preempt); ok {
				pushQuick(t, m, c, 0, pc, key)
				stampQuick(t)
				return
			}
		}
	}
	nonblock.MightSleep()
	m.acquireShared(0, 0, pc)
}

// AcquireShared takes the map shared but not recursive: lock_acquire_shared
// (read mode 1), as dma_fence_begin_signalling takes dma_fence_map. Unlike
// AcquireRead, a shared holder is a full participant: an exclusive
// acquisition of the map under a held lock, and that lock taken in the
// shared section, close a cycle, and so does taking the map exclusively
// while holding it shared. It has Acquire's cached path: a signalling
// section (dmafence.BeginSignalling) went from 47.5 to 37.9 ns a pair
// (bench figure "signalling section", median of 5).
//
//go:noinline
func (m *Map) AcquireShared() { m.acquireQuick(1, stack.ReturnPC()) }

// acquireQuick is Acquire and AcquireShared in read mode read: the cached
// path's quick tiers, then the whole way.
func (m *Map) acquireQuick(read uint8, pc uintptr) {
	if id := task.GoID(); id != 0 {
		if enabled.Load() { // nested, as in Acquire
			if t := task.ClaimHead(id); t != nil {
				c := m.cache[0].Load()
				if key, ok := quickKey(t, m, c, read, 0); ok {
					pushQuick(t, m, c, read, pc, key)
					if lockStat.Load() {
						statAcquired(t, &t.Lockdep.Held[len(t.Lockdep.Held)-1])
					}
					return
				}
				// acquire takes the record again (a store to our own node)
				// and drops it if it stays empty.
			}
		}
	}
	m.acquireShared(read, 0, pc)
}

// Release drops the map: lock_map_release. The cached path is inline, as
// in RWSem.RUnlock: the map's entry on top of the caller's stack. Like
// RUnlock it tests neither GoID's 0 nor, under another lock, the record's
// emptiness: the bench figure "signalling section" 275 -> 267 instructions
// (cachegrind, AMD EPYC (Zen 3, KVM)).
func (m *Map) Release() {
	if t := task.LookupHead(task.GoID()); t != nil { // 0, "unknown", heads no bucket
		if n := popHeld(t, m); n >= 0 {
			if n == 0 {
				t.ReleaseIfEmpty()
			}
			return
		}
	}
	releaseShared(m)
}
