package main

import (
	"fmt"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
)

// atomicStrategy is mlx5r_umr_alloc_xlt's: GFP_ATOMIC for the whole chunk,
// else one page, else an emergency page allocated at probe time, under its
// mutex.
var atomicStrategy = strategy{
	key: "atomic", label: "ATOMIC+fallback", nowait: true,
	lesson:   "GFP_ATOMIC, then a smaller chunk, then an emergency page never sleeps, but below min it succeeds by eating the reserve kept for interrupts (<min); the fallbacks cost passes, and the emergency page's mutex may only be trylocked by a non-blockable caller.",
	fallback: func(m modeResult) int64 { return m.Fallbacks },
	probe: func(d *device, _ int) (buffers, error) {
		b := &atomicBuffers{zone: d.zone}
		b.emergencyMu.Init(lockclass.WithName("xlt_emergency_page_mutex"))
		p, err := d.zone.AllocPages(0, gfp.Kernel)
		if err != nil {
			return nil, fmt.Errorf("emergency page: %w", err)
		}
		b.emergency = p
		return b, nil
	},
}

type atomicBuffers struct {
	noBuffers
	zone        *gfp.Zone
	emergency   *gfp.Page       // xlt_emergency_page
	emergencyMu lockclass.Mutex // xlt_emergency_page_mutex
}

func (b *atomicBuffers) zap(m *mirror, st *modeStats, first uint64, npages int, md mode) error {
	z := b.zone
	order := chunkOrder(npages)
	p, err := z.AllocPages(order, gfp.Atomic|gfp.NoWarn)
	if err != nil && order > 0 {
		st.allocFailures.Add(1)
		order = 0
		p, err = z.AllocPages(0, gfp.Atomic|gfp.NoWarn)
	}
	if err == nil {
		if order < chunkOrder(npages) {
			st.fallbacks.Add(1)
		}
		m.post(st, entries(p), first, npages)
		z.FreePages(p, order)
		return nil
	}
	st.allocFailures.Add(1)
	if md == blockable {
		b.emergencyMu.Lock()
	} else if !b.emergencyMu.TryLock() {
		return errAgain
	}
	st.fallbacks.Add(1)
	st.emergency.Add(1)
	m.post(st, entries(b.emergency), first, npages)
	b.emergencyMu.Unlock()
	return nil
}

func (b *atomicBuffers) reserveBytes(*device) int64 { return gfp.PageSize }

func (b *atomicBuffers) close() error {
	if b.emergency != nil {
		b.zone.FreePages(b.emergency, 0)
		b.emergency = nil
	}
	return nil
}
