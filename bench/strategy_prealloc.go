package main

import "github.com/krules/krules/gfp"

// preallocStrategy gives every mirror its buffer when its notifier is
// registered, before any lock, with GFP_KERNEL.
var preallocStrategy = strategy{
	key: "prealloc", label: "prealloc/notifier",
	lesson: "Preallocation per notifier, before any lock, makes the callback allocation-free and the fastest; the price is a buffer per notifier, and registration becomes the place where memory pressure fails.",
	probe:  func(d *device, _ int) (buffers, error) { return preallocBuffers{}, nil },
}

type preallocBuffers struct{ noBuffers }

// attach fails with -ENOMEM if memory is short, as registration would.
func (preallocBuffers) attach(m *mirror) error {
	p, err := m.dev.zone.AllocPages(maxChunkOrder, gfp.Kernel|gfp.NoWarn)
	if err != nil {
		return errNoMemory
	}
	m.buf = p
	return nil
}

func (preallocBuffers) detach(m *mirror) {
	if m.buf != nil {
		m.dev.zone.FreePages(m.buf, maxChunkOrder)
		m.buf = nil
	}
}

func (preallocBuffers) zap(m *mirror, st *modeStats, first uint64, npages int, _ mode) error {
	m.post(st, entries(m.buf), first, npages)
	return nil
}

// reserveBytes counts the buffers at their peak.
func (preallocBuffers) reserveBytes(d *device) int64 { return d.peakMirrors.Load() * chunkBytes }
