package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/mempool"
	"github.com/krules/krules/nonblock"
)

// mempoolStrategy keeps the driver's own reserve: a mempool of N buffers,
// allocated with GFP_NOWAIT in the callback.
var mempoolStrategy = strategy{
	key: "mempool", label: "mempool", nowait: true,
	lesson:   "A mempool of N buffers is the driver's own reserve: sized to the callbacks that can run at once it never runs dry, turns every failure of the zone into reserve use, and costs that memory for ever (-reserve 1 shows what an undersized pool does to the reaper).",
	fallback: func(m modeResult) int64 { return m.FromReserve },
	probe: func(d *device, reserve int) (buffers, error) {
		b := &mempoolBuffers{}
		z := d.zone
		pool, err := mempool.New(reserve, func(f gfp.Flags) (*gfp.Page, error) {
			p, err := z.AllocPages(maxChunkOrder, f)
			if err == nil && b.ready.Load() {
				markFresh(p)
			}
			return p, err
		}, func(p *gfp.Page) { z.FreePages(p, maxChunkOrder) },
			mempool.WithName("mlx5_xlt"), mempool.WithDebug(false))
		if err != nil {
			return nil, fmt.Errorf("mempool: %w", err)
		}
		b.pool = pool
		b.ready.Store(true)
		return b, nil
	},
}

type mempoolBuffers struct {
	noBuffers
	pool  *mempool.Pool[*gfp.Page]
	ready atomic.Bool        // the reserve is filled: later allocations are fresh
	wait  nonblock.WaitQueue // blockable callbacks waiting for a buffer
}

func (b *mempoolBuffers) zap(m *mirror, st *modeStats, first uint64, npages int, md mode) error {
	p, err := b.pool.Alloc(gfp.NoWait)
	for err != nil {
		st.allocFailures.Add(1)
		if md != blockable {
			return errAgain
		}
		// Every buffer is out: wait for a callback to give one back.
		// Letting the pool wait instead (a reclaiming gfp) would be
		// strategy 1's bug again.
		_, _ = b.wait.WaitTimeout(context.Background(), func() bool { return b.pool.Stats().Reserve > 0 }, time.Millisecond)
		p, err = b.pool.Alloc(gfp.NoWait)
	}
	if !takeFresh(p) {
		st.fromReserve.Add(1)
	}
	m.post(st, entries(p), first, npages)
	b.pool.Free(p)
	if b.wait.HasSleepers() {
		b.wait.WakeUp()
	}
	return nil
}

func (b *mempoolBuffers) reserveBytes(*device) int64 {
	return int64(b.pool.MinNr()) * chunkBytes
}

func (b *mempoolBuffers) close() error { return b.pool.Close() }

// freshMark tags a pool buffer that came from the allocator rather than
// the reserve, in its first entry, which every use overwrites.
const freshMark = 0x6d6c78355f786c74 // "mlx5_xlt"

func markFresh(p *gfp.Page) { entries(p)[0] = freshMark }

func takeFresh(p *gfp.Page) bool {
	e := entries(p)
	fresh := e[0] == freshMark
	e[0] = 0
	return fresh
}
