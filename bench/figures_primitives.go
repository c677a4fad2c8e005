package main

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/semaphore"

	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// primitivesFigures price the waiting and read-side primitives' hot paths
// beside their plain-Go baselines: an uncontended Semaphore Down+Up against
// x/sync/semaphore's Acquire+Release (the Weighted it is built on), an RCU
// read section against an empty call (the kernel's non-preemptible
// rcu_read_lock costs next to nothing; this one enters an atomic section,
// counts itself for grace periods and is a lockdep acquisition), and a
// seqcount read against the atomic load it guards.
var primitivesFigures = []primitiveFigure{
	{
		Name: "Semaphore Down+Up", Baseline: "x/sync Acquire+Release", MaxAllocs: 0,
		base: func() func() {
			w := semaphore.NewWeighted(1)
			ctx := context.Background()
			return func() { _ = w.Acquire(ctx, 1); w.Release(1) }
		}(),
		rules: func() func() {
			s := nonblock.NewSemaphore(1)
			return func() { s.Down(); s.Up() }
		}(),
	},
	{
		Name: "RCUReadLock+Unlock", Baseline: "empty call", MaxAllocs: 0,
		base:  emptyCall,
		rules: func() { lockclass.RCUReadLock(); lockclass.RCUReadUnlock() },
	},
	{
		Name: "SeqCount read", Baseline: "atomic load", MaxAllocs: 0,
		base: func() func() {
			var v atomic.Uint64
			return func() { _ = v.Load() }
		}(),
		rules: func() func() {
			var sc lockclass.SeqCount
			sc.Init(nil, lockclass.WithName("bench_seq"))
			var v atomic.Uint64
			return func() {
				for {
					s := sc.ReadBegin()
					_ = v.Load()
					if !sc.ReadRetry(s) {
						return
					}
				}
			}
		}(),
	},
}

// primitivesGroup is the package's figure group for the figures list.
var primitivesGroup = func() []figure {
	var fs []figure
	for _, f := range primitivesFigures {
		fs = append(fs, figure{
			Name: f.Name, Baseline: f.Baseline, MaxAllocs: f.MaxAllocs,
			base: loop(f.base), rules: loop(f.rules),
		})
	}
	return fs
}()

// primitiveFigure is a figure whose two sides are plain operations.
type primitiveFigure struct {
	Name, Baseline string
	MaxAllocs      int64
	base, rules    func()
}
