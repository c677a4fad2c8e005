package mempool

// Free gives an element back: mempool_free().
//
// If the reserve is below minNr the element refills it and every waiter is
// woken (if there is one: wq_has_sleeper, as newer kernels test, which spares
// the common free the wait queue's lock); otherwise it goes back to the
// allocator. The first test is made
// without the lock (an atomic load: the kernel's READ_ONCE after smp_rmb)
// and repeated under it. It cannot miss a needed refill: the count it reads
// is never older than the allocation of the element being freed (that
// allocation happened before this Free, and Go's atomics are sequentially
// consistent), so any Alloc that took the reserve below minNr is seen
// unless a refill already undid it; and goroutines wait only when the
// reserve is empty, so frees always reach them.
//
// A nil element is ignored. An element the pool did not hand out, or one
// freed twice, is reported (MempoolMisuse) where the pool can tell (page
// pools always, by frame number; every pool in debug mode; any pool when
// no element is outstanding) and left alone.
func (p *Pool[T]) Free(x T) {
	if p.isNil(x) {
		return
	}
	if !p.plain && !p.accept(x) {
		return
	}
	c := p.count.load()
	if c < outOne { // none out, seen without the lock
		p.reportNoneOut()
		return
	}
	if p.wantsRefill(reserveOf(c)) {
		// The refill: lockReturning's swap and the unlock's add are its
		// only locked instructions (was four: a counter swap, the
		// mutex's two, the mirror's store), with addElement inline and
		// no hook call for a plain pool (Free: 142 -> 78 instructions,
		// cachegrind, AMD EPYC (Zen 3, KVM)).
		if !p.count.lockReturning(c) {
			p.reportNoneOut()
			return
		}
		if p.wantsRefill(p.nr) && !p.closed.Load() {
			p.addElement(x)
			p.st.refills++
			wake := p.sleepers > 0
			p.unlock(intoReserve)
			if wake {
				p.wait.WakeUp()
			}
			return
		}
		p.unlock(0)
	} else if !p.count.returned() {
		p.reportNoneOut()
		return
	}
	p.free(x)
}

// accept checks that x may be freed to this pool and, in debug mode,
// forgets it as outstanding. It reports and returns false otherwise.
func (p *Pool[T]) accept(x T) bool {
	if p.ops.check != nil {
		if why := p.ops.check(x); why != "" {
			p.reportBadFree(why)
			return false
		}
	}
	if p.dbg != nil && p.ops.key != nil && !p.dbg.untrack(p.ops.key(x)) {
		p.reportBadFree("element not handed out by this pool, or already freed")
		return false
	}
	return true
}

// wantsRefill reports whether a reserve of n elements takes a freed element
// back: while below minNr, and, for a pool without a reserve, while empty,
// so that waiters are still woken by frees.
func (p *Pool[T]) wantsRefill(n int) bool {
	min := p.minNr.Load()
	return int64(n) < min || min == 0 && n == 0
}

// reportNoneOut reports a free made while no element is outstanding.
func (p *Pool[T]) reportNoneOut() {
	p.reportBadFree("no element is outstanding: a double or foreign free")
}
