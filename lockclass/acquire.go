package lockclass

import (
	"unsafe"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/nonblock"
)

// Acquisition flags.
const (
	fTry   = 1 << iota // a successful trylock: pushed, never validated
	fSync              // lock_sync: validated, never pushed
	fSleep             // a sleeping lock: might_sleep() first
)

// What lockAcquire decided.
const (
	aNone   = iota // not tracked (validation off, or a report stopped it)
	aPush          // push the entry
	aMerged        // merged into the top entry (nest_lock references)
)

// acquire annotates an acquisition of m by the calling goroutine
// (lock_acquire): for a blocking lock it runs before the lock blocks, for a
// trylock after it succeeded. It returns the goroutine's record when the
// acquisition is tracked, nil when the validator ignores it.
//
// The cached path (the class cached in the map, the chain validated before)
// costs a walk of the task table for the record, at most one probe of the
// lock-free chain cache (none with nothing held, or for a lock taken again
// under the same locks) and the push; no lock, no allocation, no stack
// capture. Mutex.Lock and RWSem.RLock spell it out inline.
func acquire(m *Map, sub int, read uint8, fl uint8, nest *Map, pc uintptr, defaults []Option) *task.Task {
	if !compiledIn || !enabled.Load() {
		return nil
	}
	t := task.Current()
	if fl&fSleep != 0 && t.NonBlock|t.Preempt != 0 {
		nonblock.MightSleep()
	}
	if uint(sub) < 2 && nest == nil && fl&fSync == 0 && pushCached(t, m, m.cache[sub].Load(), read, fl&fTry != 0, pc) {
		return t
	}
	return acquireSlow(t, m, sub, read, fl, nest, pc, defaults)
}

// The cached path of an acquisition: if the class is current and the chain
// the acquisition makes was validated before, the entry is pushed with no
// lock, no allocation and no stack capture. It is the whole cost of a
// validated lock beyond the lock itself, so it does only what a cached chain
// still needs: the usage bits and the depth high-water mark were recorded
// when the chain was validated (the chain key includes the read mode); only
// a trylock, which skips validation, sets its usage here.
//
// The two commonest cases are decided by headKeyIfCached and memoCached, which
// the lock paths inline, and pushed by pushQuick; pushCached decides all of
// them.

// headKeyIfCached returns the key of c's one-lock chain in read mode, if t
// taking c makes that chain (nothing held) and it is cached.
func (c *class) headKeyIfCached(t *task.Task, read uint8) (uint64, bool) {
	if c == nil || len(t.Lockdep.Held) != 0 || cap(t.Lockdep.Held) == 0 ||
		c.state.Load()|uint32(t.Lockdep.Off) != 0 || !c.modes[read].head.Load() {
		return 0, false
	}
	return c.modes[read].headKey, true
}

// memoCached reports whether t takes m under the same locks as when m's
// last chain was validated (m.lastChain), and returns that chain's key.
func memoCached(t *task.Task, m *Map, c *class, read uint8) (uint64, bool) {
	ld := &t.Lockdep
	if c == nil || len(ld.Held) == cap(ld.Held) || c.state.Load()|uint32(ld.Off) != 0 {
		return 0, false
	}
	key := chainKeyMix(ld.ChainKey, c.modes[read].id)
	return key, key == m.lastChain.Load()
}

// pushQuick pushes the entry of a cached acquisition that makes chain key;
// the stack has room.
func pushQuick(t *task.Task, m *Map, c *class, read uint8, try bool, pc uintptr, key uint64) {
	held := t.Lockdep.Held
	n := len(held)
	held = held[:n+1]
	t.Lockdep.Held = held // before any other store: only the length changes
	fillEntry(&held[n], m, c, read, try, pc, t.Lockdep.ChainKey)
	t.Lockdep.ChainKey = key
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
	pushQuick(t, m, c, read, try, pc, key)
	return true
}

// fillEntry writes a cached acquisition's held-lock entry field by field: a
// composite literal is built on the stack and copied with 16-byte moves that
// stall on store forwarding.
func fillEntry(h *task.HeldLock, m *Map, c *class, read uint8, try bool, pc uintptr, prev uint64) {
	h.Instance, h.Class, h.NestLock = unsafe.Pointer(m), unsafe.Pointer(c), nil
	h.Site, h.PrevChainKey = pc, prev
	h.References, h.PinCount = 0, 0
	h.Read, h.Trylock, h.Check = read, try, true
}

func (g *graph) noteDepth(d int) {
	for {
		cur := g.maxDepth.Load()
		if int32(d) <= cur || g.maxDepth.CompareAndSwap(cur, int32(d)) {
			return
		}
	}
}

//go:noinline
func acquireSlow(t *task.Task, m *Map, sub int, read uint8, fl uint8, nest *Map, pc uintptr, defaults []Option) *task.Task {
	if t.Lockdep.Off != 0 {
		t.ReleaseIfEmpty()
		return nil
	}
	c, rep := m.resolve(sub, pc, defaults)
	if c == nil || c.state.Load()&(stOff|stNoTrack|stStale) != 0 {
		t.ReleaseIfEmpty()
		emit(rep)
		return nil
	}
	emit(rep)
	hl := task.HeldLock{
		Instance: unsafe.Pointer(m), Class: unsafe.Pointer(c), Site: pc, Read: read,
		Trylock: fl&fTry != 0, Check: c.state.Load()&stNoValidate == 0,
	}
	if nest != nil {
		hl.NestLock = unsafe.Pointer(nest)
	}
	rep, act, key := c.g.lockAcquire(t, &hl, fl&fSync != 0)
	// Emit before pushing: under the panic policy Emit unwinds, and then
	// neither the lock nor the entry is taken.
	emit(rep)
	switch act {
	case aPush:
		t.Lockdep.Held = append(t.Lockdep.Held, hl)
		t.Lockdep.ChainKey = key
		c.g.noteDepth(len(t.Lockdep.Held))
		return t
	case aMerged:
		return t
	}
	t.ReleaseIfEmpty()
	return nil
}

func emit(r *krules.Report) {
	if r != nil {
		krules.Emit(r)
	}
}

// lockAcquire is the body of __lock_acquire for an entry whose class is
// resolved: nest_lock merging, usage, the chain key, the nest-lock check,
// validation and the depth limit. The caller pushes on aPush.
func (g *graph) lockAcquire(t *task.Task, hl *task.HeldLock, sync bool) (*krules.Report, int, uint64) {
	c := (*class)(hl.Class)
	held := t.Lockdep.Held
	depth := len(held)
	prev := t.Lockdep.ChainKey
	if depth == 0 {
		prev = 0
	}
	key := chainKeyMix(prev, c.modes[hl.Read].id)

	// nest_lock merging: the same class again on top, serialised by an
	// outer lock, only counts a reference.
	if depth > 0 && !sync && hl.NestLock != nil {
		top := &held[depth-1]
		if top.Class == hl.Class {
			refs := hl.References
			if refs == 0 {
				refs = 1
			}
			if top.References == 0 {
				top.References = 1
			}
			top.References += refs
			if top.References > 2047 {
				if g.off() {
					return warnf(krules.LockdepMisuse, "DEBUG_LOCKS_WARN_ON(hlock->references < references)"), aMerged, key
				}
			}
			return nil, aMerged, key
		}
	}

	c.markUsage(hl.Read, hl.Check, sync)
	hl.PrevChainKey = prev

	if hl.NestLock != nil && !heldInstance(t, hl.NestLock) {
		if g.reportable(false) {
			return nestedNotTakenReport(t, hl), aNone, key
		}
		return nil, aNone, key
	}

	if !hl.Trylock && hl.Check {
		if rep := g.validateChain(t, hl, key, depth == 0, sync); rep != nil {
			if !g.v.keepGoing || !g.enabled.Load() || sync {
				return rep, aNone, key
			}
			return rep, aPush, key
		}
		if !g.enabled.Load() {
			return nil, aNone, key
		}
	}
	if sync {
		return nil, aNone, key
	}
	if depth+1 >= MaxLockDepth {
		if !g.off() {
			return nil, aNone, key
		}
		t.Lockdep.Held = append(held, *hl) // the report lists the new lock too
		rep := depthReport(depth + 1)
		t.Lockdep.Held = held
		return rep, aNone, key
	}
	return nil, aPush, key
}

// heldInstance reports whether the goroutine holds the map at p.
func heldInstance(t *task.Task, p unsafe.Pointer) bool {
	for i := range t.Lockdep.Held {
		if t.Lockdep.Held[i].Instance == p {
			return true
		}
	}
	return false
}

// validateChain runs the checks for a chain not seen before
// (validate_chain): the chain is cached first, then the AA check, then the
// dependencies from the nearest blocking predecessor.
func (g *graph) validateChain(t *task.Task, hl *task.HeldLock, key uint64, head, sync bool) *krules.Report {
	c := (*class)(hl.Class)
	if head && c.modes[hl.Read].head.Load() || !head && g.chains.Load().has(key) {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.enabled.Load() || g.chains.Load().has(key) {
		return nil
	}
	g.syncing = sync
	g.cacheMisses.Add(1)
	held := t.Lockdep.Held
	if len(g.chainList) >= g.v.lim.Chains {
		if g.offLocked() {
			return limitReport("BUG: MAX_LOCKDEP_CHAINS too low!")
		}
		return nil
	}
	if g.chainHlocks+len(held)+1 > g.v.lim.ChainHlocks {
		if g.offLocked() {
			return limitReport("BUG: MAX_LOCKDEP_CHAIN_HLOCKS too low!")
		}
		return nil
	}
	hls := make([]chainLock, 0, len(held)+1)
	for i := range held {
		hls = append(hls, chainLock{(*class)(held[i].Class), held[i].Read})
	}
	g.addChain(key, append(hls, chainLock{c, hl.Read}))
	if head {
		c.modes[hl.Read].head.Store(true)
	}

	ret, rep := g.checkDeadlock(t, hl)
	if rep != nil || ret == 0 {
		return rep
	}
	if !head && ret != 2 {
		return g.checkPrevsAdd(t, hl)
	}
	return nil
}

// checkDeadlock is the AA check (check_deadlock): 1 = fine, 2 = fine via the
// nest lock (add no dependencies), 0 = reported.
func (g *graph) checkDeadlock(t *task.Task, next *task.HeldLock) (int, *krules.Report) {
	held := t.Lockdep.Held
	nest := false
	for i := range held {
		prev := &held[i]
		if next.NestLock != nil && prev.Instance == next.NestLock {
			nest = true
		}
		if prev.Class != next.Class {
			continue
		}
		// read-after-read recursion of one class is allowed when the new
		// acquisition is a recursive read
		if next.Read == 2 && prev.Read != 0 {
			continue
		}
		if nest {
			return 2, nil
		}
		if !g.reportable(true) {
			return 0, nil
		}
		return 0, recursiveReport(t, prev, next)
	}
	return 1, nil
}

// checkPrevsAdd adds the dependencies of a new lock (check_prevs_add): from
// every trylock on top of the stack and from the nearest blocking lock below
// them; older locks are connected through the edges recorded when the
// nearer ones were taken. Entries that are not validated, or belong to
// another validator, are skipped.
func (g *graph) checkPrevsAdd(t *task.Task, next *task.HeldLock) *krules.Report {
	var tr *trace
	held := t.Lockdep.Held
	depth := len(held)
	for i := depth - 1; i >= 0; i-- {
		prev := &held[i]
		pc := (*class)(prev.Class)
		if !prev.Check || pc.g != g || pc.state.Load()&stStale != 0 {
			continue
		}
		if rep, ok := g.checkPrevAdd(t, prev, next, depth-i, &tr); !ok {
			return rep
		}
		if !prev.Trylock {
			break
		}
	}
	return nil
}

// checkPrevAdd records prev -> next after proving it closes no strong cycle
// (check_prev_add). ok is false when validation must stop.
func (g *graph) checkPrevAdd(t *task.Task, prev, next *task.HeldLock, distance int, tr **trace) (*krules.Report, bool) {
	pcl, ncl := (*class)(prev.Class), (*class)(next.Class)
	path, found, overflow := g.bfs(ncl, next.Read == 2, pcl, prev.Read)
	if overflow {
		if g.offLocked() {
			return bfsReport(), false
		}
		return nil, false
	}
	if found >= 0 {
		if !g.reportable(true) {
			return nil, false
		}
		if pcl == ncl {
			return recursiveReport(t, prev, next), false
		}
		return circularReport(t, prev, next, path, found, g.syncing), false
	}
	dep := calcDep(prev.Read, next.Read)
	for _, e := range pcl.after {
		if e.to == ncl {
			if distance == 1 {
				e.distance = 1
			}
			e.dep |= dep
			return nil, true
		}
	}
	if *tr == nil {
		var rep *krules.Report
		if *tr, rep = g.saveTrace(); *tr == nil {
			return rep, false
		}
	}
	if g.entries+2 > g.v.lim.Entries {
		if g.offLocked() {
			return limitReport("BUG: MAX_LOCKDEP_ENTRIES too low!"), false
		}
		return nil, false
	}
	e := &edge{from: pcl, to: ncl, dep: dep, distance: distance, trace: *tr}
	pcl.after = append(pcl.after, e)
	ncl.before = append(ncl.before, e)
	g.entries += 2
	return nil, true
}

// release annotates a release of m by the calling goroutine (lock_release);
// t is its record if the caller knows it. It returns false if m was not
// held (reported when validation is on).
func release(m *Map, t *task.Task) bool {
	if t == nil {
		if !compiledIn {
			return false
		}
		t = task.Lookup()
	}
	if t != nil && popTop(t, m) {
		t.ReleaseIfEmpty()
		return true
	}
	return releaseSlow(m, t)
}

// popTop is release's cached path, small enough to be inlined into the
// unlock paths: m's entry is on top of t's stack, with no references or
// pins. It reports whether it popped it; the caller then releases the
// record if the stack is empty.
func popTop(t *task.Task, m *Map) bool {
	held := t.Lockdep.Held
	n := len(held) - 1
	if n < 0 || held[n].Instance != unsafe.Pointer(m) || held[n].References|uint32(held[n].PinCount) != 0 {
		return false
	}
	prev := held[n].PrevChainKey
	t.Lockdep.Held = held[:n] // before any other store: only the length changes
	t.Lockdep.ChainKey = prev
	return true
}

// releaseShared releases m for a holder the lock does not remember (readers,
// lock maps): the record is looked up.
func releaseShared(m *Map) {
	if compiledIn {
		release(m, nil)
	}
}

// findHeld is find_held_lock: the topmost entry of m, or a reference-counted
// entry of m's class.
func findHeld(t *task.Task, m *Map) int {
	if t == nil {
		return -1
	}
	held := t.Lockdep.Held
	var c0 *class
	for i := len(held) - 1; i >= 0; i-- {
		h := &held[i]
		if h.Instance == unsafe.Pointer(m) {
			return i
		}
		if h.References > 0 {
			if c0 == nil {
				c0 = m.cache[0].Load()
				if c0 == nil {
					if cfg := m.cfg.Load(); cfg != nil {
						sub := cfg.sub
						c0 = cfg.validator().graph().lookup(cfg.key, sub)
					}
				}
			}
			if c0 != nil && h.Class == unsafe.Pointer(c0) {
				return i
			}
		}
	}
	return -1
}

// mapGraph returns the graph m's acquisitions go to.
func (m *Map) graph() *graph {
	if cfg := m.cfg.Load(); cfg != nil {
		return cfg.validator().graph()
	}
	return defaultValidator.graph()
}

// validating reports whether releases of m are checked now.
func (m *Map) validating(t *task.Task) bool {
	if !compiledIn || !enabled.Load() || t != nil && t.Lockdep.Off != 0 {
		return false
	}
	if cfg := m.cfg.Load(); cfg != nil && cfg.key == &noTrackKey {
		return false
	}
	return m.graph().enabled.Load()
}

//go:noinline
func releaseSlow(m *Map, t *task.Task) bool {
	i := findHeld(t, m)
	if i < 0 {
		if m.untracked.Load() > 0 && m.untracked.Add(-1) >= 0 {
			// one of the acquisitions the validator did not follow
		} else if m.validating(t) && m.graph().reportable(false) {
			krules.Emit(unlockBalanceReport(m))
		}
		if t != nil {
			t.ReleaseIfEmpty()
		}
		return false
	}
	held := t.Lockdep.Held
	h := &held[i]
	var reps []*krules.Report
	if h.PinCount != 0 && m.validating(t) {
		reps = append(reps, warnf(krules.LockdepMisuse, "releasing a pinned lock"))
	}
	if h.References > 0 {
		h.References--
		if h.References > 0 {
			emitAll(reps)
			return true
		}
	}
	above := append([]task.HeldLock(nil), held[i+1:]...)
	t.Lockdep.ChainKey = h.PrevChainKey
	t.Lockdep.Held = held[:i]
	reps = append(reps, rebuild(t, above)...)
	if len(t.Lockdep.Held) == 0 {
		t.ReleaseIfEmpty()
	}
	emitAll(reps)
	return true
}

func emitAll(reps []*krules.Report) {
	for _, r := range reps {
		emit(r)
	}
}

// rebuild re-acquires entries on top of the stack after the one below them
// went away or changed (reacquire_held_locks): each goes through the whole
// acquisition again, so the new sequences are validated. Entries the
// validator no longer follows are pushed back as they are, so the held-lock
// list stays true.
func rebuild(t *task.Task, entries []task.HeldLock) []*krules.Report {
	var reps []*krules.Report
	for _, e := range entries {
		c := (*class)(e.Class)
		prev := t.Lockdep.ChainKey
		if len(t.Lockdep.Held) == 0 {
			prev = 0
		}
		key := chainKeyMix(prev, c.modes[e.Read].id)
		act := aPush
		if c.state.Load()&(stStale|stOff) == 0 && enabled.Load() && t.Lockdep.Off == 0 {
			var rep *krules.Report
			rep, act, key = c.g.lockAcquire(t, &e, false)
			if rep != nil {
				reps = append(reps, rep)
			}
		}
		e.PrevChainKey = prev
		if act != aMerged {
			t.Lockdep.Held = append(t.Lockdep.Held, e)
			t.Lockdep.ChainKey = key
		}
	}
	return reps
}
