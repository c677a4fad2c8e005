// Package task holds krules' equivalent of the kernel's task_struct: the
// state each goroutine carries while it is inside a non-block or atomic
// section, in an allocation scope, holding instrumented locks, or named.
//
// Every subsystem keeps its per-goroutine fields here, in one record, so that
// the root package can report on them together (a might-sleep report prints
// the held locks) without import cycles. A record exists only while it is
// non-empty: each subsystem calls ReleaseIfEmpty after it clears its fields.
// The record's node then stays in the table, idle, for the same goroutine to
// take back without an atomic read-modify-write, until its bucket needs the
// room (see table.go), so goroutine churn leaves nothing behind.
//
// Only the owning goroutine reads or writes a record's fields; that is what
// makes them cheap. Code that walks other goroutines' records (Each) may only
// read records whose owners are known to be stopped or synchronised with it.
package task

import (
	"sync/atomic"

	"github.com/petermattis/goid"
)

// Task is the per-goroutine record.
type Task struct {
	owner atomic.Int64 // the goroutine the node belongs to, for its whole life; never 0
	// busy is 1 while the record exists (is non-empty); only the owner
	// stores it, with ownerStore, except Reap for a dead owner.
	busy atomic.Int32
	// retiring is set by a trim taking the node out of its bucket; an owner
	// that sees it backs off (see table.go).
	retiring atomic.Int32
	next     atomic.Pointer[Task]

	// ID is the owning goroutine's id, a plain copy for the owner's use.
	ID int64
	// Name is what reports print before /ID, like the kernel's comm.
	Name string

	// Each subsystem's state is one embedded part that says itself whether
	// it carries state (used: non-zero if so) and how a dead goroutine's part
	// is cleared: a new part is one field here and one term in Empty and Reap.
	Sections // nonblock: non-block and atomic sections
	Scope    // gfp: allocation scopes

	// Lockdep is the lock validator's per-task state.
	Lockdep Lockdep
}

// Sections is nonblock's part of the record.
type Sections struct {
	// NonBlock counts nested nonblock.Start calls (non_block_count). Like
	// the kernel's task_struct it keeps no entry site: the trace checker
	// finds it in the section's region.
	NonBlock int32
	// Preempt counts nested atomic sections (preempt_count).
	Preempt int32
	// PreemptSite is the PC of the outermost atomic section's start, printed
	// as "Preemption disabled at:".
	PreemptSite uintptr

	// RCUNest counts nested rcu_read_lock calls (lockclass owns it); RCUIdx
	// is the grace-period counter the outermost one counted itself in.
	RCUNest int32
	RCUIdx  uint8

	// Regions are the runtime/trace regions of the open sections that were
	// entered while tracing was on, innermost last.
	Regions []SectionRegion
}

func (s *Sections) used() int {
	return int(s.NonBlock|s.Preempt|s.RCUNest) | len(s.Regions)
}

func (s *Sections) reap() {
	s.NonBlock, s.Preempt, s.RCUNest, s.RCUIdx = 0, 0, 0, 0
	s.PreemptSite = 0
	clear(s.Regions) // a dead goroutine's regions cannot be ended; drop them
	s.Regions = s.Regions[:0]
}

// Scope is gfp's part of the record.
type Scope struct {
	// Memalloc holds the PF_MEMALLOC* scope bits (memalloc_flags_save).
	Memalloc uint32
}

func (s *Scope) used() int { return int(s.Memalloc) }
func (s *Scope) reap()     { s.Memalloc = 0 }

// Empty reports whether the record carries no state, so it can be dropped.
// The parts' terms are or-ed and tested once: one branch, not one a part
// (a nonblock Start+End pair 141 -> 138 instructions, cachegrind, on an AMD
// EPYC (Zen 3, KVM)).
func (t *Task) Empty() bool {
	return t.Lockdep.used()|t.Sections.used()|t.Scope.used()|len(t.Name) == 0
}

// Lookup returns the calling goroutine's record, or nil if it has none.
// It never allocates and never locks. (ID is spelled out here and in Current:
// it cannot be inlined, and this saves the hot paths a call.)
func Lookup() *Task {
	if idMode.Load() != modeFast {
		return lookup(slowID())
	}
	return lookup(goid.Get())
}

// LookupHead is Lookup's common case for callers that know their id, small
// enough to be inlined into the unlock paths: the caller's busy node heads
// its bucket. It returns nil otherwise; call Lookup then. Any id is
// accepted: 0, GoID's "unknown", matches no node. Its tests are nested ifs,
// as ClaimHead's are, for the same reason: an RWSem read pair 234 -> 230
// instructions, an invalidation with 1 notifier, whose two
// lockclass.Map.Release calls inline it, 791 -> 784 (cachegrind, AMD EPYC
// (Zen 3, KVM)).
func LookupHead(id int64) *Task {
	if t := bucketFor(id).head.Load(); t.owner.Load() == id { // never nil: chainEnd
		if t.busy.Load() != 0 {
			return t
		}
	}
	return nil
}

// Peek returns the caller's node, whether its record exists (busy) or not
// (idle), or nil if it has none; id must be the caller's, from GoID, and not
// 0 (GoID's "unknown": call Lookup then). It is for checks that only read,
// and small enough to be inlined: an idle node's fields are all in their
// empty state (it went idle only once empty, through ReleaseIfEmpty, or was
// made empty by Reap), so a test such as "is the goroutine inside a
// section" reads false on it, as on a missing record. Writing to the node
// needs Claim. It spares Lookup a call and the busy load: nonblock's
// MightSleep outside sections went from 63 to 55 instructions (bench figure
// "MightSleep outside sections", cachegrind, loop included, AMD EPYC (Zen 3,
// KVM)). The head is tested before the walk so that the common case is
// straight code: 2 instructions less than one loop outside sections, 2.5
// less a MightSleep with a record at the head (an invalidation's). Its
// owner also tells an empty bucket (chainEnd's, noOwner) without a walk.
func Peek(id int64) *Task {
	t := bucketFor(id).head.Load() // never nil: chainEnd
	switch t.owner.Load() {
	case id:
		return t
	case noOwner:
		return nil // the bucket is empty
	}
	for t = t.next.Load(); t != chainEnd; t = t.next.Load() {
		if t.owner.Load() == id {
			return t
		}
	}
	return nil
}

// PeekHead is Peek's common case as straight code, for callers that expect
// their node at the head of its bucket (nonblock.End, after Start claimed
// it): the node if it heads the bucket, nil otherwise (call Lookup then).
// Any id is accepted: 0, GoID's "unknown", matches no node. It is five
// instructions shorter than Peek's loop there (cachegrind, AMD EPYC).
func PeekHead(id int64) *Task {
	if t := bucketFor(id).head.Load(); t.owner.Load() == id { // never nil: chainEnd
		return t
	}
	return nil
}

// LookupID returns the record of goroutine id, or nil. Only the owner may
// use the fields of the result; others may only test for presence.
func LookupID(id int64) *Task { return lookup(id) }

// Current returns the calling goroutine's record, creating it if needed.
// The caller must call ReleaseIfEmpty once it has cleared what it set.
func Current() *Task {
	if idMode.Load() != modeFast {
		return Claim(slowID())
	}
	return Claim(goid.Get())
}

// Claim is Current for callers that already know their goroutine id (from
// SiteID); id must be the caller's. It takes the goroutine's own node back
// with plain memory accesses and no atomic read-modify-write.
func Claim(id int64) *Task {
	for t := bucketFor(id).head.Load(); t != chainEnd; t = t.next.Load() {
		if t.owner.Load() == id {
			if t.take() {
				return t
			}
			break
		}
	}
	return claimSlow(id)
}

// ClaimHead is Claim's common case, small enough to be inlined into the lock
// hot paths: the caller's node heads its bucket. It returns nil otherwise;
// call Claim then. Any id is accepted: 0, GoID's "unknown", matches no node
// (no node is ever owned by 0), so callers need not test for it first. Its
// tests are nested ifs rather than one && chain, which the compiler turned
// into a materialised bool tested again: a nonblock Start+End pair 144 -> 141
// instructions (cachegrind, AMD EPYC (Zen 3, KVM)).
func ClaimHead(id int64) *Task {
	if t := bucketFor(id).head.Load(); t.owner.Load() == id { // never nil: chainEnd
		if ownerStore(&t.busy, 1); t.retiring.Load() == 0 { // take, spelled out for the branches
			return t
		}
	}
	return nil
}

// Reclaim takes t, a guess at the caller's node (a lock's last holder),
// back if it is the node of goroutine id, the caller, and returns it; it
// returns nil otherwise, for a nil t and for id 0 (no node is owned by 0).
// It returns the node rather than a bool, and tests in nested ifs, so that
// the inlined result is tested once: a Mutex pair 223 -> 220 instructions
// (cachegrind, AMD EPYC (Zen 3, KVM)).
func Reclaim(t *Task, id int64) *Task {
	if t != nil {
		if t.owner.Load() == id {
			if t.take() {
				return t
			}
		}
	}
	return nil
}

// take marks the caller's own node busy unless a trim is retiring it: the
// owner's side of the table's Dekker pair (see table.go). When it fails the
// node may be left busy; claimSlow sorts that out under the bucket lock.
func (t *Task) take() bool {
	ownerStore(&t.busy, 1) // busy already or not: a store to our own line
	return t.retiring.Load() == 0
}

// Publish orders the owner's writes to its record so far before the reads
// of a sweep that finds the owner returned (krules.ReapExited), for the race
// detector: the sweep's order comes from its dump of every goroutine's
// stack, a stop-the-world the detector does not model, so the owner
// republishes busy (an atomic store the sweep's Each loads) after a write
// that may be its last. Without -race it compiles to nothing.
func (t *Task) Publish() {
	if raceEnabled {
		t.busy.Store(1)
	}
}

// ReleaseIfEmpty drops the record if it carries no state: the node goes
// idle, for the goroutine to take again. Only the owner calls it. It is
// cheap enough to be inlined into the unlock paths: the fields that outlive
// their counts (the section sites) are reset by their owners.
func (t *Task) ReleaseIfEmpty() {
	if t.Empty() {
		t.Lockdep.ChainKey = 0 // the empty stack's key, whatever happened
		ownerStore(&t.busy, 0) // after the clearing stores, as a release
	}
}

// Each calls fn for every live record until fn returns false. Reading the
// fields of another goroutine's record is racy unless that goroutine has
// finished or is otherwise synchronised with the caller.
func Each(fn func(t *Task) bool) {
	for i := range table {
		for t := table[i].head.Load(); t != chainEnd; t = t.next.Load() {
			if t.busy.Load() != 0 && !fn(t) {
				return
			}
		}
	}
}

// Owner returns the id of the goroutine whose record this is, or 0 if the
// record does not exist now (the node is idle). Unlike ID it may be read by
// any goroutine.
func (t *Task) Owner() int64 {
	if t.busy.Load() == 0 {
		return 0
	}
	return t.owner.Load()
}

// Len returns the number of live records.
func Len() int {
	n := 0
	Each(func(*Task) bool { n++; return true })
	return n
}

// Reap clears the record of a goroutine that has returned and frees its
// slot. Only code that has established the owner is gone may call it.
func Reap(t *Task) {
	t.Name = ""
	t.Sections.reap()
	t.Scope.reap()
	t.Lockdep.reap()
	t.busy.Store(0)
}
