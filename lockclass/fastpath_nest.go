//go:build !krules_nolockdep

package lockclass

import (
	"unsafe"

	"github.com/krules/krules/internal/task"
)

// The cached path of a nest_lock acquisition and its release: a WWMutex
// locked inside its acquire context. __lock_acquire merges an acquisition
// with a nest lock into the top entry when that entry is of the same class
// (a reference more; the chain key does not change), and pushes it
// otherwise, after checking that the nest lock is held; __lock_release
// drops a reference and pops the entry with the last one.
//
// WWMutex.Lock and Unlock spell the merge and the drop out inline, with the
// record the context kept at Init instead of a task-table walk per lock
// (WWAcquireCtx.own: the context belongs to one goroutine, and a goroutine
// id read in place tells whether the caller is it); Init, Done and Fini take
// their own cached paths with that record. Measured with the bench figure
// "WWMutex 8 in one ctx" (eight locks in one context, unlocked, Fini;
// eight sync.Mutex beside it) on an AMD EPYC (Zen 3, KVM), these tiers took
// it from 4353 to 2409 instructions per op (cachegrind; eight sync.Mutex:
// 199) and from 416 to 208 ns (min of 32 noisy runs; eight sync.Mutex:
// 44.5); with the plain state word (WWMutex.state) and Done's and Init's
// tests trimmed it is 1999 instructions and 149 ns (min of 24 noisy runs;
// eight sync.Mutex: 42.8). Lock's inline path kept to the merge (the
// first lock of an attempt, which pushes, out of line in lockCached; the
// return address read only off it; the lock word taken before the
// reference is counted) and Unlock's tests one an if took it to 1943;
// lockCached's wound test inline (resetWound and forgetWound were two
// calls on every attempt) and Unlock testing the class only for a drop and
// the instance only for a pop, 1911; Done's and Fini's tests one an if,
// 1900; the merge reading the reference count once and taking the lock
// word the context keeps (WWAcquireCtx.held), 1872; Unlock's pop testing
// the record for emptiness only at depth 0, as popHeld does (the context's
// own entry is below every lock taken in it), 1860; the first lock's push
// inline in lockCached (pushNestQuick), 1828; Init's quick tier inline,
// 1814; Unlock testing m.ctx instead of the state word, 1783; the wound
// cleared before the stack's loads, 1777; Lock testing for the first lock
// before them, 1762.
//
// What is left of a merged lock and its drop (about 80 and 65 instructions
// against sync.Mutex's pair of about 20) is the kernel's bookkeeping and
// Go's calls: the goroutine id read in place twice (an assembly call, with
// the registers it clobbers spilled around it: nest_lock's "is current
// holding it" and DEBUG_MUTEXES' owner check), the validation, class,
// section and ww_class tests, the lock word, the reference counted and
// dropped, lock->ctx, the owner and ctx->acquired. Per attempt, Init's
// stamp (an atomic add) and push, the first lock's chain key and push, Done
// and Fini add about 380; the figure's own loop about 210.

// acquireNested annotates an acquisition of the sleeping lock m (write
// mode, subclass 0) nested in nest by t, the caller's record, at pc, and
// reports whether it could do so without the slow path; the caller has
// done might_sleep. Its two tiers:
//
//   - the merge: the top entry is of m's class, so the acquisition only
//     counts a reference in it, which is all acquireSlow would do;
//   - the push: the top entry is nest's own (so the nest lock is held, as
//     the slow path checks) and pushNested pushes the entry, the chain
//     being cached; the entry names its nest lock.
//
// Anything else, the class not cached or not in its normal state,
// validation off for t, the references near their limit, goes the slow
// path.
func acquireNested(t *task.Task, m, nest *Map, pc uintptr) bool {
	c := m.cache[0].Load()
	held := t.Lockdep.Held
	n := len(held) - 1
	if !compiledIn || c == nil || n < 0 || c.state.Load()|uint32(t.Lockdep.Off) != 0 {
		return false
	}
	top := &held[n]
	if top.Class == unsafe.Pointer(c) {
		if top.References >= 2046 {
			return false // the slow path warns at the limit
		}
		top.References = max(top.References, 1) + 1
		return true
	}
	return top.Instance == unsafe.Pointer(nest) && pushNested(t, m, c, nest, pc)
}

// pushNested is acquireNested's push: the nest lock's entry is on top of
// t's stack and the class, c, current. The quick tiers first, as Mutex.Lock
// takes them; the busy test is the caller's.
func pushNested(t *task.Task, m *Map, c *class, nest *Map, pc uintptr) bool {
	if key, ok := quickKey(t, m, c, 0, 0); ok {
		pushQuick(t, m, c, 0, pc, key)
		stampQuick(t)
	} else if !pushCached(t, m, c, 0, false, pc) {
		return false
	}
	t.Lockdep.Held[len(t.Lockdep.Held)-1].NestLock = unsafe.Pointer(nest)
	return true
}

// pushNestQuick is pushQuick for an acquisition nested in nest: the entry
// names its nest lock, stored with the other pointers under one write
// barrier test (the slot past the top keeps NestLock nil, as pushQuick
// says). The caller has made quickKey's tests, with key, the chain the
// acquisition makes, found in m.lastChain. pushQuick takes no nest lock,
// for it would store it on every Mutex.Lock. WWMutex.lockCached's push
// through pushNested cost the first lock of an attempt a call, a second
// test of the class, the validation and the stack, and a second write
// barrier test for NestLock: WWMutex 8 in one ctx 1860 -> 1828
// instructions with it (cachegrind, AMD EPYC (Zen 3, KVM)).
func pushNestQuick(t *task.Task, m *Map, c *class, nest *Map, pc uintptr, key uint64) {
	ld := &t.Lockdep
	held, prev := ld.Held, ld.ChainKey
	n := len(held)
	held = held[:n+1]
	ld.Held = held // before any other store: only the length changes
	h := &held[n]
	h.Site, h.PrevChainKey = pc, prev
	h.Read, h.Trylock, h.Check = 0, false, true
	h.Instance, h.Class, h.Label, h.NestLock = unsafe.Pointer(m), unsafe.Pointer(c), classLabel, unsafe.Pointer(nest)
	ld.ChainKey = key
	t.Publish() // for -race: a goroutine may return holding it
}

// releaseNested is the cached path of a release of m by t, the caller's
// record: m's entry is on top (by instance, or by class with references,
// as findHeld matches it), neither pinned nor stamped by lock_stat. It
// drops a reference, or pops the entry with its last one as popTop does,
// and reports whether it could.
func releaseNested(t *task.Task, m *Map) bool {
	held := t.Lockdep.Held
	n := len(held) - 1
	if !compiledIn || n < 0 {
		return false
	}
	h := &held[n]
	if uint64(uint32(h.PinCount))|uint64(h.Stamp) != 0 ||
		h.Instance != unsafe.Pointer(m) && (h.References == 0 || h.Class != unsafe.Pointer(m.cache[0].Load())) {
		return false
	}
	if h.References > 1 {
		h.References--
		return true
	}
	t.Lockdep.Held = held[:n] // before any other store: only the length changes
	t.Lockdep.ChainKey = h.PrevChainKey
	h.Instance, h.Class, h.NestLock, h.References = nil, nil, nil, 0
	if n == 0 { // only depth 0 can leave the record empty
		t.ReleaseIfEmpty()
	}
	return true
}
