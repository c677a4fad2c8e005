package mmnotifier_test

import (
	"fmt"
	"testing"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/mmnotifier"
)

// cheap is a notifier whose callbacks do almost nothing: what is measured
// is the dispatch around them.
type cheap struct{ starts, ends int }

func (c *cheap) InvalidateRangeStart(*mmnotifier.Range) error { c.starts++; return nil }
func (c *cheap) InvalidateRangeEnd(*mmnotifier.Range)         { c.ends++ }

// benchMM returns an address space on a zone of its own, torn down when
// the benchmark ends.
func benchMM(b *testing.B) *mmnotifier.MM {
	z, err := gfp.NewZone(16<<20, gfp.WithoutKswapd())
	if err != nil {
		b.Fatal(err)
	}
	mm := mmnotifier.NewMM(mmnotifier.WithZone(z), mmnotifier.WithoutReclaim())
	b.Cleanup(func() {
		mm.Exit()
		mmnotifier.Synchronize()
		z.Close()
	})
	return mm
}

// BenchmarkInvalidate is a blockable invalidation (start and end) of a range
// with n list notifiers, against the same callbacks called directly.
func BenchmarkInvalidate(b *testing.B) {
	for _, n := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("notifiers=%d/direct", n), func(b *testing.B) {
			mm := benchMM(b)
			ns := make([]mmnotifier.EndNotifier, n)
			for i := range ns {
				ns[i] = &cheap{}
			}
			r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, 1<<20)
			b.ReportAllocs()
			for b.Loop() {
				for _, x := range ns {
					_ = x.InvalidateRangeStart(&r)
				}
				for _, x := range ns {
					x.InvalidateRangeEnd(&r)
				}
			}
		})
		b.Run(fmt.Sprintf("notifiers=%d/krules", n), func(b *testing.B) {
			mm := benchMM(b)
			for range n {
				if _, err := mmnotifier.Register(mm, &cheap{}); err != nil {
					b.Fatal(err)
				}
			}
			r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, 1<<20)
			mm.MmapLock().RLock()
			defer mm.MmapLock().RUnlock()
			b.ReportAllocs()
			for b.Loop() {
				mmnotifier.InvalidateRangeStart(&r)
				mmnotifier.InvalidateRangeEnd(&r)
			}
		})
	}
}

// BenchmarkInvalidateNonblock is the OOM reaper's kind of invalidation:
// every callback in a non-block section.
func BenchmarkInvalidateNonblock(b *testing.B) {
	mm := benchMM(b)
	for range 8 {
		if _, err := mmnotifier.Register(mm, &cheap{}); err != nil {
			b.Fatal(err)
		}
	}
	r := mmnotifier.NewRange(mm, mmnotifier.EventUnmap, 0, 1<<20)
	mm.MmapLock().RLock()
	defer mm.MmapLock().RUnlock()
	b.ReportAllocs()
	for b.Loop() {
		if mmnotifier.InvalidateRangeStartNonblock(&r) == nil {
			mmnotifier.InvalidateRangeEnd(&r)
		}
	}
}

// BenchmarkInvalidateParallel is blockable invalidations from every
// processor at once, on one address space with 8 notifiers.
func BenchmarkInvalidateParallel(b *testing.B) {
	mm := benchMM(b)
	for range 8 {
		if _, err := mmnotifier.Register(mm, mmnotifier.Notifier((&mmnotifier.Funcs{}).Notifier())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, 1<<20)
		mm.MmapLock().RLock()
		defer mm.MmapLock().RUnlock()
		for pb.Next() {
			mmnotifier.InvalidateRangeStart(&r)
			mmnotifier.InvalidateRangeEnd(&r)
		}
	})
}

// intervalSeq is an interval callback that does what every one must.
type intervalSeq struct{}

func (intervalSeq) Invalidate(sub *mmnotifier.IntervalNotifier, _ *mmnotifier.Range, cur uint64) bool {
	sub.SetSeq(cur)
	return true
}

// IntervalBench sets up n one-page intervals, 16 KiB apart, and returns a
// function that invalidates a range hitting exactly one of them: the one in
// the middle every time, or with stride a different one each call, striding
// through the whole tree (so that most of the walk misses the caches).
func IntervalBench(b *testing.B, n int, stride bool) func() {
	mm := benchMM(b)
	for i := range n {
		if _, err := mmnotifier.InsertInterval(mm, uint64(i)*4*mmnotifier.PageSize, mmnotifier.PageSize, intervalSeq{}); err != nil {
			b.Fatal(err)
		}
	}
	r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 0, 0)
	next := n / 2
	return func() {
		if stride {
			next = (next + 7919) % n // a prime stride visits every interval
		}
		r.Start = uint64(next) * 4 * mmnotifier.PageSize
		r.End = r.Start + mmnotifier.PageSize
		mmnotifier.InvalidateRangeStart(&r)
		mmnotifier.InvalidateRangeEnd(&r)
	}
}

// BenchmarkIntervalInvalidate is an invalidation that hits one interval
// among 1k, 10k and 100k: the same one each time, or a different one each
// time (stride).
func BenchmarkIntervalInvalidate(b *testing.B) {
	for _, stride := range []bool{false, true} {
		for _, n := range []int{1_000, 10_000, 100_000} {
			b.Run(fmt.Sprintf("stride=%v/intervals=%d", stride, n), func(b *testing.B) {
				op := IntervalBench(b, n, stride)
				b.ReportAllocs()
				for b.Loop() {
					op()
				}
			})
		}
	}
}

// The hot paths allocate nothing: list and interval invalidations, blockable
// or not.
func TestInvalidationsDoNotAllocate(t *testing.T) {
	mm := newMM(t)
	for range 8 {
		_, err := mmnotifier.Register(mm, &cheap{})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 64 {
		if _, err := mmnotifier.InsertInterval(mm, uint64(i)*4*pg, pg, intervalSeq{}); err != nil {
			t.Fatal(err)
		}
	}
	r := mmnotifier.NewRange(mm, mmnotifier.EventClear, 8*pg, 9*pg)
	mm.MmapLock().RLock()
	defer mm.MmapLock().RUnlock()
	allocs := testing.AllocsPerRun(100, func() {
		mmnotifier.InvalidateRangeStart(&r)
		mmnotifier.InvalidateRangeEnd(&r)
		if mmnotifier.InvalidateRangeStartNonblock(&r) == nil {
			mmnotifier.InvalidateRangeEnd(&r)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per invalidation pair", allocs)
	}
}
