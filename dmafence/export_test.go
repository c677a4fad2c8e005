package dmafence

// Listed returns every fence in r's list, signalled or not (what the lock
// holder's dma_resv_for_each_fence visits, which Fences does not offer),
// for the tests of what the list keeps.
func Listed(r *Resv) []*Fence {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Fence, 0, len(r.fences))
	for _, rf := range r.fences {
		out = append(out, rf.f)
	}
	return out
}

// Room returns how many fences r's list has room for: max_fences, which
// ReserveFences grows, Unlock cuts to the fences held, and a missing
// reservation's AddFence raises by one.
func Room(r *Resv) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.max
}
