package main

import (
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
)

// gfpFigures are the page allocator's hot paths: an order-0 page
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
		// With a lock held, MightAlloc really acquires and releases the
		// fs_reclaim and notifier maps: lockdep's price for proving reclaim
		// deadlocks.
		Name: "gfp order-0 pages, lock held", Baseline: "__GFP_NOLOCKDEP", MaxAllocs: 0,
		base: withZone(func(z *gfp.Zone) func() {
			return func() {
				heldLock.Lock()
				allocFreePageFlags(z, gfp.Kernel|gfp.NoLockdep)
				heldLock.Unlock()
			}
		}),
		rules: withZone(func(z *gfp.Zone) func() {
			return func() {
				heldLock.Lock()
				allocFreePageFlags(z, gfp.Kernel)
				heldLock.Unlock()
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

// heldLock is held around allocations by the lock-held figure.
var heldLock lockclass.Mutex

// pageSink keeps the baseline's allocations from being optimised away.
var pageSink []byte

//go:noinline
func allocFreePage(z *gfp.Zone) { allocFreePageFlags(z, gfp.Kernel) }

func allocFreePageFlags(z *gfp.Zone, flags gfp.Flags) {
	p, err := z.AllocPages(0, flags)
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

// demonstrateGFP shows the allocator's two signature reports: a lock held
// across a GFP_KERNEL allocation that the driver's shrinker also takes,
// proven through fs_reclaim without any memory pressure; and warn_alloc's
// failure report.
func demonstrateGFP(w io.Writer) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "3. A lock held across a GFP_KERNEL allocation that the driver's shrinker also takes, found through fs_reclaim with no memory pressure:")
	lockclass.Default().Reset()
	defer lockclass.Default().Reset()
	z, err := gfp.NewZone(4 << 20)
	if err != nil {
		fmt.Fprintln(w, "    zone:", err)
		return
	}
	defer z.Close()
	reports := krules.Collect(func() {
		var lock lockclass.Mutex
		lock.Init(lockclass.WithName("&drv->lock"))
		s := &gfp.Shrinker{
			Name:  "drv",
			Count: func(*gfp.ShrinkControl) uint64 { return 1000 },
			Scan: func(*gfp.ShrinkControl) uint64 {
				lock.Lock()
				defer lock.Unlock()
				return gfp.ShrinkStop
			},
		}
		if err := z.RegisterShrinker(s); err != nil {
			panic(err)
		}
		defer z.UnregisterShrinker(s)
		z.Reclaim(1, gfp.Kernel) // memory.reclaim, once: fs_reclaim -> lock
		lock.Lock()
		b, err := z.Alloc(256, gfp.Kernel) // lock -> fs_reclaim
		lock.Unlock()
		if err == nil {
			z.Free(b)
		}
	})
	for _, r := range reports {
		fmt.Fprintln(w)
		fmt.Fprint(w, indent(r.Text))
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "4. A GFP_ATOMIC allocation that finds the zone exhausted (warn_alloc):")
	reports = krules.Collect(func() {
		krules.SetName("kworker/u4:1")
		defer krules.SetName("")
		var held []*gfp.Page
		for {
			p, err := z.AllocPages(2, gfp.Atomic)
			if err != nil {
				break
			}
			held = append(held, p)
		}
		for _, p := range held {
			z.FreePages(p, 2)
		}
	})
	for _, r := range reports {
		fmt.Fprintln(w)
		fmt.Fprint(w, indent(r.Text))
	}
}
