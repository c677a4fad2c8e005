package lockclass

import (
	"unsafe"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/nonblock"
)

// Acquisition flags.
const (
	fTry     = 1 << iota // a successful trylock: pushed, never validated
	fSync                // lock_sync: validated, never pushed
	fSleep               // a sleeping lock: might_sleep() first
	fNoCheck             // check = 0 (rcu_lock_acquire): held and listed, never ordered
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
	if uint(sub) < 2 && nest == nil && fl&(fSync|fNoCheck) == 0 && pushCached(t, m, m.cache[sub].Load(), read, fl&fTry != 0, pc) {
		return t
	}
	return acquireSlow(t, m, sub, read, fl, nest, pc, defaults)
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
		Instance: unsafe.Pointer(m), Class: unsafe.Pointer(c), Label: classLabel, Site: pc, Read: read,
		Trylock: fl&fTry != 0, Check: c.state.Load()&stNoValidate == 0 && fl&fNoCheck == 0,
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
		if t.Lockdep.Held == nil {
			t.Lockdep.Held = make([]task.HeldLock, 0, task.HeldCap)
		}
		t.Lockdep.Held = append(t.Lockdep.Held, hl)
		t.Lockdep.ChainKey = key
		t.Publish()
		c.g.noteDepth(len(t.Lockdep.Held))
		if lockStat.Load() {
			statAcquired(t, &t.Lockdep.Held[len(t.Lockdep.Held)-1])
		}
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

	if hl.NestLock != nil && findHeld(t, (*Map)(hl.NestLock)) < 0 {
		// __lock_acquire checks the wait context before the nest lock.
		if rep := g.checkWaitContext(t, hl, false); rep != nil {
			return rep, aNone, key
		}
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
	} else if !hl.Trylock {
		// check_wait_context runs on every acquisition, checked or not: a
		// no-validate lock keeps its wait types (lockdep_set_novalidate_class
		// re-inits the map with them), so a mutex of that class is still
		// an invalid wait context inside a spinlock_t. uncheckedQuick may
		// skip it for rcu_lock_map: its outer type, LD_WAIT_FREE, is never
		// above a held lock's inner one.
		if rep := g.checkWaitContext(t, hl, false); rep != nil {
			if !g.v.keepGoing || !g.enabled.Load() || sync {
				return rep, aNone, key
			}
			return rep, aPush, key
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
		truncateHeld(t, depth)
		return rep, aNone, key
	}
	return nil, aPush, key
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
	// The wait context comes first: __lock_acquire checks it before
	// validate_chain caches the chain (add_chain_cache and its limits).
	if rep := g.checkWaitContext(t, hl, true); rep != nil {
		return rep
	}
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

	ret, rep := g.checkDeadlock(t, hl)
	if rep == nil && ret != 0 && !head && ret != 2 {
		rep = g.checkPrevsAdd(t, hl)
	}
	// The kernel caches the chain before checking it (lookup_chain_cache_add)
	// and a report turns validation off for good. A validator that keeps
	// going must not cache a chain whose check reported: the dependencies it
	// did not record would never be learnt.
	if rep == nil {
		g.addChain(key, append(hls, chainLock{c, hl.Read}))
		if head {
			c.modes[hl.Read].head.Store(true)
		}
	}
	return rep
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
