package main

import "github.com/krules/krules/gfp"

// kernelStrategy allocates the buffer with GFP_KERNEL in the callback: the
// bug.
var kernelStrategy = strategy{
	key: "kernel", label: "GFP_KERNEL", bug: true,
	lesson: "GFP_KERNEL in the callback is the bug. Reclaim may run notifiers, so lockdep proves the cycle between the notifier map and fs_reclaim on the first call, with no memory pressure; under the OOM reaper every call is a sleep in a non-blocking section, and below min it fails, which a blockable callback may not do (a WARNING) and which leaves the reaper unable to reap.",
	probe:  func(*device, int) (buffers, error) { return kernelBuffers{}, nil },
}

type kernelBuffers struct{ noBuffers }

func (kernelBuffers) zap(m *mirror, st *modeStats, first uint64, npages int, _ mode) error {
	z := m.dev.zone
	order := chunkOrder(npages)
	p, err := z.AllocPages(order, gfp.Kernel)
	if err != nil {
		st.allocFailures.Add(1)
		return errNoMemory
	}
	m.post(st, entries(p), first, npages)
	z.FreePages(p, order)
	return nil
}
