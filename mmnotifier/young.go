package mmnotifier

// Accessed-bit aging: reclaim asks whether a page was used recently, both
// by the CPU (the entry's accessed bit) and by every secondary MMU (the
// young callbacks), as ptep_clear_flush_young_notify does.

// ClearFlushYoung tests and clears the accessed bits of [start, end), the
// CPU's and, through their ClearFlushYoung callbacks, every notifier's, and
// reports whether any was set: ptep_clear_flush_young_notify over a range.
// Callbacks run with the page-table lock held, so they must not sleep.
func (mm *MM) ClearFlushYoung(start, end uint64) bool {
	return mm.young(start, end, true)
}

// ClearYoung is ClearFlushYoung without the flush: the notifiers'
// ClearYoung callbacks (ptep_clear_young_notify).
func (mm *MM) ClearYoung(start, end uint64) bool {
	return mm.young(start, end, false)
}

func (mm *MM) young(start, end uint64, flush bool) bool {
	mm.mmapLock.RLock()
	defer mm.mmapLock.RUnlock()
	mm.ptl.Lock()
	defer mm.ptl.Unlock()
	young := false
	mm.pt.walk(start, end, func(_ uint64, e *pte) bool {
		if e.flags&pteYoung != 0 {
			young = true
			e.flags &^= pteYoung
		}
		return true
	})
	if flush {
		return mm.notifierClearFlushYoung(start, end) || young
	}
	return mm.notifierClearYoung(start, end) || young
}

// TestYoung reports whether the page at addr was accessed, by the CPU or
// through a notifier's TestYoung (the first true answer wins), without
// clearing anything: mmu_notifier_test_young with the CPU's bit.
func (mm *MM) TestYoung(addr uint64) bool {
	mm.mmapLock.RLock()
	defer mm.mmapLock.RUnlock()
	mm.ptl.Lock()
	defer mm.ptl.Unlock()
	if e := mm.pt.get(addr); e.page != nil && e.flags&pteYoung != 0 && mm.vmaAt(addr) != nil {
		return true
	}
	subs := mm.subs.Load()
	if subs == nil {
		return false
	}
	tok := srcu.readLock()
	defer srcu.readUnlock(tok)
	for _, s := range *subs.list.Load() {
		if s.ty != nil && s.ty.TestYoung(mm, addr) {
			return true
		}
	}
	return false
}

// notifierClearFlushYoung is __mmu_notifier_clear_flush_young: the ORed
// answers of every notifier's ClearFlushYoung. The caller holds the
// page-table lock.
func (mm *MM) notifierClearFlushYoung(start, end uint64) bool {
	return mm.askEach(func(s *Subscription) bool {
		return s.cfy != nil && s.cfy.ClearFlushYoung(mm, start, end)
	})
}

// notifierClearYoung is __mmu_notifier_clear_young.
func (mm *MM) notifierClearYoung(start, end uint64) bool {
	return mm.askEach(func(s *Subscription) bool {
		return s.cy != nil && s.cy.ClearYoung(mm, start, end)
	})
}

// askEach asks every subscription, inside an SRCU read section, and ORs
// the answers: each is asked even after one said yes, as the kernel's
// clear-young loops do, since asking is what clears its bits.
func (mm *MM) askEach(ask func(s *Subscription) bool) bool {
	subs := mm.subs.Load()
	if subs == nil {
		return false
	}
	young := false
	tok := srcu.readLock()
	for _, s := range *subs.list.Load() {
		if ask(s) {
			young = true
		}
	}
	srcu.readUnlock(tok)
	return young
}
