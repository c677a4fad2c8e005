package main

import (
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
)

// mmnotifierFigures are the MMU-notifier hot paths: a blockable
// invalidation (start and end) with 1, 8 and 64 notifiers, against calling
// the same callbacks directly (the budget is 50 ns per callback call over
// the callback itself); and an invalidation that hits one interval among
// 1k, 10k and 100k, which may grow at most 2× from 1k to 100k. The interval
// figures hit the same interval each time (a range hitting one, the
// cheapest walk); the strided figure hits a different one each time, so
// that most of the tree walk misses the caches, and has no target.
var mmnotifierFigures = []figure{
	invalidateFigure(1),
	invalidateFigure(8),
	invalidateFigure(64),
	{
		Name: "interval inval. 10k vs 1k", Baseline: "1k intervals", Target: 2, MaxAllocs: 0,
		base: intervalFigure(1_000, false), rules: intervalFigure(10_000, false),
	},
	{
		Name: "interval inval. 100k vs 1k", Baseline: "1k intervals", Target: 2, MaxAllocs: 0,
		base: intervalFigure(1_000, false), rules: intervalFigure(100_000, false),
	},
	{
		Name: "interval inval. 100k, strided", Baseline: "1k, strided", MaxAllocs: 0,
		base: intervalFigure(1_000, true), rules: intervalFigure(100_000, true),
	},
}

// driverNotifier's callbacks do what a driver's cheapest ones do: take the
// driver's lock and count. The figures subtract them.
type driverNotifier struct {
	mu           sync.Mutex
	starts, ends int
}

func (d *driverNotifier) InvalidateRangeStart(*mmnotifier.Range) error {
	d.mu.Lock()
	d.starts++
	d.mu.Unlock()
	return nil
}

func (d *driverNotifier) InvalidateRangeEnd(*mmnotifier.Range) {
	d.mu.Lock()
	d.ends++
	d.mu.Unlock()
}

func invalidateFigure(n int) figure {
	return figure{
		Name:     fmt.Sprintf("invalidate, %d notifier(s)", n),
		Baseline: fmt.Sprintf("%d direct calls", 2*n),
		OverNs:   50, Units: 2 * n, Unit: "call", MaxAllocs: 0,
		base: func(b *testing.B) {
			withMM(b, func(mm *mmnotifier.MM) {
				ns := make([]mmnotifier.EndNotifier, n)
				for i := range ns {
					ns[i] = &driverNotifier{}
				}
				r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, 1<<20)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					for _, x := range ns {
						_ = x.InvalidateRangeStart(&r)
					}
					for _, x := range ns {
						x.InvalidateRangeEnd(&r)
					}
				}
			})
		},
		rules: func(b *testing.B) {
			withMM(b, func(mm *mmnotifier.MM) {
				for range n {
					if _, err := mmnotifier.Register(mm, &driverNotifier{}); err != nil {
						b.Fatal(err)
					}
				}
				r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, 1<<20)
				mm.MmapLock().RLock()
				defer mm.MmapLock().RUnlock()
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					mmnotifier.InvalidateRangeStart(&r)
					mmnotifier.InvalidateRangeEnd(&r)
				}
			})
		},
	}
}

// intervalSetSeq does what every interval callback must, and no more.
type intervalSetSeq struct{}

func (intervalSetSeq) Invalidate(sub *mmnotifier.IntervalNotifier, _ *mmnotifier.Range, cur uint64) bool {
	sub.SetSeq(cur)
	return true
}

// intervalFigure invalidates a range hitting one of n one-page intervals
// 16 KiB apart: the middle one each time, or with stride a different one.
func intervalFigure(n int, stride bool) func(b *testing.B) {
	return func(b *testing.B) {
		withMM(b, func(mm *mmnotifier.MM) {
			for i := range n {
				if _, err := mmnotifier.InsertInterval(mm, uint64(i)*4*gfp.PageSize, gfp.PageSize, intervalSetSeq{}); err != nil {
					b.Fatal(err)
				}
			}
			r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, 0)
			next := n / 2
			mm.MmapLock().RLock()
			defer mm.MmapLock().RUnlock()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if stride {
					next = (next + 7919) % n
				}
				r.Start = uint64(next) * 4 * gfp.PageSize
				r.End = r.Start + gfp.PageSize
				mmnotifier.InvalidateRangeStart(&r)
				mmnotifier.InvalidateRangeEnd(&r)
			}
		})
	}
}

// withMM runs fn with an address space on a zone of its own, and tears
// both down after.
func withMM(b *testing.B, fn func(mm *mmnotifier.MM)) {
	z, err := gfp.NewZone(16<<20, gfp.WithoutKswapd())
	if err != nil {
		b.Fatal(err)
	}
	mm := mmnotifier.NewMM(mmnotifier.WithZone(z), mmnotifier.WithoutReclaim())
	fn(mm)
	mm.Exit()
	mmnotifier.Synchronize()
	z.Close()
}

// demonstrateMMNotifier shows the notifier-allocation deadlock: a driver
// lock held across a GFP_KERNEL allocation and taken in an MMU-notifier
// callback, found with no memory pressure.
func demonstrateMMNotifier(w io.Writer) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "6. A driver lock held across a GFP_KERNEL allocation and taken in an MMU-notifier callback, found with no memory pressure:")
	if !lockdepCompiledIn {
		fmt.Fprintln(w, "\n    (not in this build: lockdep is compiled out with -tags krules_nolockdep)")
		return
	}
	lockclass.Default().Reset()
	defer lockclass.Default().Reset()
	z, err := gfp.NewZone(4<<20, gfp.WithoutKswapd())
	if err != nil {
		fmt.Fprintln(w, "    zone:", err)
		return
	}
	defer z.Close()
	reports := krules.Collect(func() {
		var lock lockclass.Mutex
		lock.Init(lockclass.WithName("&drv->lock"))
		mm := mmnotifier.NewMM(mmnotifier.WithZone(z))
		defer mm.Exit()
		f := &mmnotifier.Funcs{Start: func(*mmnotifier.Range) error {
			lock.Lock() // the callback takes the driver lock
			defer lock.Unlock()
			return nil
		}}
		sub, err := mmnotifier.Register(mm, f.Notifier())
		if err != nil {
			panic(err)
		}
		defer sub.Unregister()
		lock.Lock()
		b, err := z.Alloc(256, gfp.Kernel) // lock -> fs_reclaim -> notifier map
		lock.Unlock()
		if err == nil {
			z.Free(b)
		}
		addr, err := mm.Mmap(gfp.PageSize, mmnotifier.ProtReadWrite)
		if err == nil {
			mm.Unmap(addr, gfp.PageSize) // notifier map -> lock
		}
	})
	for _, r := range reports {
		fmt.Fprintln(w)
		fmt.Fprint(w, indent(r.Text))
	}
}
