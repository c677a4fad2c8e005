package gfp

// AllocPages allocates a block of 1<<order contiguous pages: alloc_pages().
// It applies the goroutine's allocation scopes (CurrentContext), checks the
// context with MightAlloc, consults fault injection, then tries the fast
// path (the low watermark, per-CPU-style page caches) and else the slow path
// (kswapd, the reserves the flags allow, direct reclaim, retries, the OOM
// hook) exactly as far as flags allow. Zero returns zeroed memory.
//
// On failure it returns ErrNoMemory and, unless NoWarn, reports
// "page allocation failure: order:N, mode:0x…(FLAGS)" (rate limited). An
// order above MaxOrder is reported (WARN_ON_ONCE_GFP) and fails.
func (z *Zone) AllocPages(order int, flags Flags) (*Page, error) {
	// The call's site, fs_reclaim's "at:" in reports, is AllocPages' own,
	// not an inlined helper's.
	return z.allocPagesChecked(order, flags, pgAlloc, true)
}

// allocPagesChecked is __alloc_pages for blocks of the given kind, with
// might_alloc's checks only if check (vmalloc checks once for all its
// pages, and a slab is grown inside a kmalloc that has checked already). A caller that checks is the
// allocator entry: reports name the call site in that caller as where
// fs_reclaim was taken ("at:").
func (z *Zone) allocPagesChecked(order int, flags Flags, kind uint32, check bool) (*Page, error) {
	if z.closed.Load() {
		return nil, ErrClosed
	}
	t, pf := currentTask()
	gfp := applyContext(flags, pf)
	if uint(order) > MaxOrder {
		z.warnOnceGFP(warnOrderTooLarge, gfp, "order %d > MAX_PAGE_ORDER (%d)", order, MaxOrder)
		return nil, ErrNoMemory
	}
	if check {
		mightAllocTask(gfp, t, pf, outerSite) // its caller is the entry
	}
	if fa := z.failPage.Load(); fa != nil && fa.shouldFailAllocPage(gfp, order) {
		z.stats.injected.Add(1)
		return nil, ErrNoMemory
	}
	// The fast path: the low watermark, waking nobody.
	af := allocWmarkLow | allocFlags(gfp&KswapdReclaim)
	if p := z.getPageFromFreelist(order, af, kind); p != nil {
		z.prepNewPage(p, order, gfp)
		return p, nil
	}
	if z.closed.Load() {
		return nil, ErrClosed // closed while in flight
	}
	p := z.slowPath(order, gfp, kind, pf)
	if p == nil {
		if z.closed.Load() {
			return nil, ErrClosed
		}
		return nil, ErrNoMemory
	}
	z.prepNewPage(p, order, gfp)
	return p, nil
}

// prepNewPage is prep_new_page: zero the block if asked.
func (z *Zone) prepNewPage(p *Page, order int, gfp Flags) {
	if gfp&Zero != 0 {
		off := p.index() << PageShift
		clear(z.mem[off : off+PageSize<<order])
	}
}

// getPageFromFreelist checks the watermark af selects (unless af waives
// them) and takes a block (get_page_from_freelist for the zone's single
// zonelist entry).
func (z *Zone) getPageFromFreelist(order int, af allocFlags, kind uint32) *Page {
	headroom := int64(1) << 62
	if af&allocNoWatermark == 0 {
		headroom = z.watermarkOK(order, af, z.nrFree.Load())
		if headroom == 0 {
			return nil
		}
	}
	return z.rmqueue(order, headroom, kind)
}

// rmqueue takes a block: from the goroutine's page cache for small orders
// (refilled with at most headroom pages, so that no caller takes the zone
// below its own watermark), else from the buddy lists.
func (z *Zone) rmqueue(order int, headroom int64, kind uint32) *Page {
	var idx int32
	if order < pcpOrders {
		s := z.lockShard()
		if len(s.lists[order]) == 0 {
			// nr_pcp_alloc scales the batch to the order, but takes
			// at least two blocks unless the batch is one (a small
			// zone's: then nothing is to linger on the list).
			n := 1
			if z.pcpBatch > 1 {
				n = max(z.pcpBatch>>order, 2)
			}
			n = int(min(int64(n), headroom>>order))
			z.pcpRefill(s, order, max(n, 1))
		}
		l := s.lists[order]
		if len(l) == 0 {
			s.mu.Unlock()
			return nil
		}
		idx = l[len(l)-1]
		s.lists[order] = l[:len(l)-1]
		s.count -= 1 << order
		s.ev.pgalloc += 1 << order
		s.ev.allocs[order]++
		s.mu.Unlock()
	} else {
		z.mu.Lock()
		idx = z.rmqueueSmallest(order)
		if idx == none {
			z.mu.Unlock()
			return nil
		}
		z.nrFree.Add(-1 << order)
		z.stats.highAllocs[order]++
		z.mu.Unlock()
	}
	p := &z.pages[idx]
	p.state.Store(pageState(kind, order))
	return p
}

// FreePages frees a block AllocPages returned: __free_pages(page, order).
// order must be the order it was allocated with. A nil page is ignored. A
// page of another zone, a block that is already free, one freed with the
// wrong order or a page that is not the head of an allocated block is
// reported ("BUG: Bad page state", at most a burst of 60 a minute per
// zone, as bad_page rate-limits) and left alone.
func (z *Zone) FreePages(p *Page, order int) {
	if p == nil {
		return
	}
	idx := z.indexOf(p)
	if idx < 0 {
		z.reportForeignPage(p)
		return
	}
	if uint(order) > MaxOrder || !p.state.CompareAndSwap(pageState(pgAlloc, order), pageState(pgFreeing, order)) {
		z.reportBadFree(p, order, pgAlloc)
		return
	}
	z.freeBlock(int32(idx), order)
}

// FreePages frees a block to the zone it came from: __free_pages.
func FreePages(p *Page, order int) {
	if p == nil {
		return
	}
	if p.zone == nil {
		reportForeignPage(nil, p)
		return
	}
	p.zone.FreePages(p, order)
}

// freeBlock returns a claimed block: to the goroutine's page cache for
// small orders, draining a batch to the buddy lists when the cache is over
// its high mark, else straight to the buddy lists. Below the low watermark
// the caches are bypassed, so that what reclaim and the OOM hook free counts
// as free at once (the kernel shrinks pcp->high to a few batches while
// reclaim is active for the same reason).
func (z *Zone) freeBlock(idx int32, order int) {
	z.noteFreed(1 << order)
	if order < pcpOrders && z.nrFree.Load() >= z.wmark[wmarkLow].Load() {
		s := z.lockShard()
		z.pages[idx].state.Store(pageState(pgPCP, order))
		s.lists[order] = append(s.lists[order], idx)
		s.count += 1 << order
		s.ev.pgfree += 1 << order
		if s.count > z.pcpHigh {
			z.pcpDrain(s, order, max(1, z.pcpBatch>>order))
		}
		s.mu.Unlock()
		return
	}
	z.pages[idx].state.Store(pageState(pgFreeing, order))
	z.mu.Lock()
	z.freeOne(idx, order)
	z.nrFree.Add(1 << order)
	z.stats.highFrees += 1 << order
	z.mu.Unlock()
}
