package main

import (
	"sync"
	"testing"

	"github.com/krules/krules/gfp"
)

// gfpFigures are the page allocator's hot paths (issue 4): an order-0 page
// against a Go allocation of the same size with its garbage-collection cost
// (the loop runs long enough for many collections), a 64-byte kmalloc, and
// two goroutines against one.
var gfpFigures = []figure{
	{
		Name: "gfp order-0 AllocPages+FreePages", Baseline: "make 4 KiB+GC", Target: 1.0 / 3, MaxAllocs: 0,
		base:  loop(func() { pageSink = make([]byte, gfp.PageSize) }),
		rules: withZone(func(z *gfp.Zone) func() { return func() { allocFreePage(z) } }),
	},
	{
		Name: "gfp Alloc+Free 64 B", Baseline: "make 64 B+GC", MaxAllocs: 0,
		base: loop(func() { pageSink = make([]byte, 64) }),
		rules: withZone(func(z *gfp.Zone) func() {
			return func() {
				b, err := z.Alloc(64, gfp.Kernel)
				if err != nil {
					panic(err)
				}
				z.Free(b)
			}
		}),
	},
	{
		// ns/op of the same total work on two goroutines against one: at
		// most 1/1.3 means two goroutines get at least 1.3x the throughput.
		Name: "gfp order-0 pages, 2 goroutines", Baseline: "1 goroutine", Target: 1 / 1.3, MaxAllocs: -1,
		base:  splitPages(1),
		rules: splitPages(2),
	},
}

// pageSink keeps the baseline's allocations from being optimised away.
var pageSink []byte

//go:noinline
func allocFreePage(z *gfp.Zone) {
	p, err := z.AllocPages(0, gfp.Kernel)
	if err != nil {
		panic(err)
	}
	z.FreePages(p, 0)
}

// withZone runs op on a zone of its own, closed when the benchmark ends.
func withZone(op func(z *gfp.Zone) func()) func(b *testing.B) {
	return func(b *testing.B) {
		z, err := gfp.NewZone(64 << 20)
		if err != nil {
			b.Fatal(err)
		}
		defer z.Close()
		loop(op(z))(b)
	}
}

// splitPages does b.N order-0 allocations and frees spread over n
// goroutines.
func splitPages(n int) func(b *testing.B) {
	return func(b *testing.B) {
		z, err := gfp.NewZone(64 << 20)
		if err != nil {
			b.Fatal(err)
		}
		defer z.Close()
		b.ReportAllocs()
		b.ResetTimer()
		var wg sync.WaitGroup
		for i := range n {
			ops := b.N / n
			if i == 0 {
				ops += b.N % n
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range ops {
					allocFreePage(z)
				}
			}()
		}
		wg.Wait()
	}
}

// Appended here rather than in figures.go's literal so that each package's
// figures merge without touching the others' lines.
func init() { figures = append(figures, gfpFigures...) }
