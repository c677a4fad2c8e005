package gfp

// The buddy allocator proper: free lists of aligned blocks of 2^order pages,
// each block's buddy at index ^ (1<<order). Everything here runs under the
// zone lock. Only block heads carry a kind other than pgTail, so splitting
// and merging touch O(1) descriptors per step.

const none = -1

type freeArea struct {
	head  int32
	count int
}

// listAdd pushes block idx onto the free list of its order.
func (z *Zone) listAdd(idx int32, order int) {
	a := &z.area[order]
	p := &z.pages[idx]
	p.prev = none
	p.next = a.head
	if a.head != none {
		z.pages[a.head].prev = idx
	}
	a.head = idx
	a.count++
	z.nrBlocks[order].Store(int64(a.count))
}

// listDel unlinks block idx from the free list of its order.
func (z *Zone) listDel(idx int32, order int) {
	a := &z.area[order]
	p := &z.pages[idx]
	if p.prev != none {
		z.pages[p.prev].next = p.next
	} else {
		a.head = p.next
	}
	if p.next != none {
		z.pages[p.next].prev = p.prev
	}
	p.next, p.prev = none, none
	a.count--
	z.nrBlocks[order].Store(int64(a.count))
}

// rmqueueSmallest takes the smallest free block of at least order, splits
// it down to order and returns its head (__rmqueue_smallest and expand).
// The caller accounts nrFree. A closed zone hands out nothing: this is the
// one place a block leaves the buddy lists, and Close counts the free pages
// under the same lock, so every block is either taken before that count
// (and keeps the arena mapped) or refused after it.
func (z *Zone) rmqueueSmallest(order int) int32 {
	if z.closed.Load() {
		return none
	}
	for o := order; o <= MaxOrder; o++ {
		idx := z.area[o].head
		if idx == none {
			continue
		}
		z.listDel(idx, o)
		for o > order {
			o--
			upper := idx + 1<<o
			z.pages[upper].state.Store(pageState(pgFree, o))
			z.listAdd(upper, o)
		}
		return idx
	}
	return none
}

// freeOne returns block idx of the given order to the free lists, merging it
// with its buddy for as long as the buddy is a free block of the same order
// (__free_one_page). The caller has claimed the block and accounts nrFree.
func (z *Zone) freeOne(idx int32, order int) {
	for order < MaxOrder {
		buddy := idx ^ 1<<order
		if int(buddy) >= len(z.pages) || z.pages[buddy].state.Load() != pageState(pgFree, order) {
			break
		}
		z.listDel(buddy, order)
		if buddy < idx {
			z.pages[idx].state.Store(pgTail)
			idx = buddy
		} else {
			z.pages[buddy].state.Store(pgTail)
		}
		order++
	}
	z.pages[idx].state.Store(pageState(pgFree, order))
	z.listAdd(idx, order)
}

// seedFreeLists puts every page of a new zone on the free lists as the
// largest aligned blocks that fit, as memblock hands memory to the buddy
// allocator at boot.
func (z *Zone) seedFreeLists() {
	for o := range z.area {
		z.area[o].head = none
	}
	n := int32(len(z.pages))
	for i := range z.pages {
		z.pages[i].next, z.pages[i].prev = none, none
	}
	for idx := int32(0); idx < n; {
		order := MaxOrder
		for order > 0 && (idx&(1<<order-1) != 0 || idx+1<<order > n) {
			order--
		}
		z.pages[idx].state.Store(pageState(pgFree, order))
		z.listAdd(idx, order)
		idx += 1 << order
	}
	z.nrFree.Store(int64(n))
}
