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
	c := p.count.Load()
	if c < outOne { // none out, seen without the lock
		p.reportNoneOut()
		return
	}
	if p.wantsRefill(reserveOf(c)) {
		p.mu.Lock()
		if p.wantsRefill(p.nr) && !p.closed.Load() {
			if !p.returned(freeToReserve) {
				p.mu.Unlock()
				p.reportNoneOut()
				return
			}
			if !p.plain {
				p.enterReserve(x)
			}
			p.elements[p.nr] = x
			p.nr++
			p.st.refills++
			wake := p.sleepers > 0
			p.mu.Unlock()
			if wake {
				p.wait.WakeUp()
			}
			return
		}
		p.mu.Unlock()
	}
	if !p.returned(freeToAllocator) {
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

// returned counts an element back in, moving the count word by delta
// (freeToReserve or freeToAllocator), unless none is out: then the free is
// a double or foreign one that the pool recognises without debug mode, and
// the caller reports and refuses it, so that the count stays true and the
// element reaches neither the reserve (which would hand it out twice) nor
// the allocator. Under mu (freeToReserve) the mirror of nr cannot change
// between the load and the swap; out can, by hand-outs from the allocator
// and frees to it, which take no lock.
func (p *Pool[T]) returned(delta uint64) bool {
	for {
		c := p.count.Load()
		if c < outOne {
			return false
		}
		if p.count.CompareAndSwap(c, c+delta) {
			return true
		}
	}
}

// reportNoneOut reports a free made while no element is outstanding.
func (p *Pool[T]) reportNoneOut() {
	p.reportBadFree("no element is outstanding: a double or foreign free")
}
