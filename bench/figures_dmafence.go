package main

import (
	"context"
	"sync"
	"testing"

	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/lockclass"
)

// dmafenceFigures are the GPU-driver paths: a WWAcquireCtx over eight
// WWMutexes beside eight sync.Mutexes taken in address order (the
// deadlock-free way without wound/wait), a Fence signalled and waited for
// beside a channel closed and received from, and an empty signalling
// section beside an empty call.
var dmafenceFigures = []figure{
	{
		Name: "WWMutex 8 in one ctx", Baseline: "8 sync.Mutex in order", Target: 4, MaxAllocs: 0,
		base:  benchSync8,
		rules: benchWW8,
	},
	{
		Name: "Fence Signal+Wait", Baseline: "close+receive chan", Target: 3, MaxAllocs: 1,
		base: func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ch := make(chan struct{})
				close(ch)
				<-ch
			}
		},
		rules: func(b *testing.B) {
			tl := dmafence.ContextAlloc(1)
			bg := context.Background()
			warm := dmafence.New(tl, 0)
			_ = warm.Signal()
			_ = warm.Wait(bg)
			b.ReportAllocs()
			b.ResetTimer()
			seq := uint64(0)
			for b.Loop() {
				seq++
				// A new fence each op, as the baseline makes a channel: a
				// fence is one-shot, and initialising one again while
				// somebody may still hold it is what the kernel's
				// RCU-deferred dma_fence_free exists to prevent. Reusing
				// one would measure what no driver may do.
				f := dmafence.New(tl, seq)
				_ = f.Signal()
				_ = f.Wait(bg)
			}
		},
	},
	{
		Name: "signalling section", Baseline: "empty call", MaxAllocs: 0,
		base: loop(emptyCall),
		rules: func(b *testing.B) {
			dmafence.EndSignalling(dmafence.BeginSignalling())
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				c := dmafence.BeginSignalling()
				dmafence.EndSignalling(c)
			}
		},
	},
}

func benchSync8(b *testing.B) {
	var ms [8]sync.Mutex
	b.ReportAllocs()
	for b.Loop() {
		for i := range ms {
			ms[i].Lock()
		}
		for i := range ms {
			ms[i].Unlock()
		}
	}
}

var benchWWClass = lockclass.NewWWClass("bench_ww_class")

// benchWW8 locks eight objects in one acquire context, after a warm-up
// round so that the chains are cached.
func benchWW8(b *testing.B) {
	ms := new([8]lockclass.WWMutex)
	for i := range ms {
		ms[i].Init(benchWWClass)
	}
	ctx := new(lockclass.WWAcquireCtx)
	round := func() {
		ctx.Init(benchWWClass)
		for i := range ms {
			if err := ms[i].Lock(ctx); err != nil {
				panic(err)
			}
		}
		ctx.Done()
		for i := range ms {
			ms[i].Unlock()
		}
		ctx.Fini()
	}
	round()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		round()
	}
}
