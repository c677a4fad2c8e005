package gfp_test

import (
	"testing"

	"github.com/krules/krules/gfp"
)

func benchZone(b *testing.B) *gfp.Zone {
	z, err := gfp.NewZone(64 << 20)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = z.Close() })
	return z
}

func BenchmarkAllocFreePage(b *testing.B) {
	z := benchZone(b)
	b.ReportAllocs()
	for b.Loop() {
		p, err := z.AllocPages(0, gfp.Kernel)
		if err != nil {
			b.Fatal(err)
		}
		z.FreePages(p, 0)
	}
}

func BenchmarkAllocFreePageParallel(b *testing.B) {
	z := benchZone(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := z.AllocPages(0, gfp.Kernel)
			if err != nil {
				b.Fatal(err)
			}
			z.FreePages(p, 0)
		}
	})
}

func BenchmarkKmalloc64(b *testing.B) {
	z := benchZone(b)
	b.ReportAllocs()
	for b.Loop() {
		p, err := z.Alloc(64, gfp.Kernel)
		if err != nil {
			b.Fatal(err)
		}
		z.Free(p)
	}
}

var sink []byte

func BenchmarkMake4096(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink = make([]byte, 4096)
	}
}

func BenchmarkAllocFreePageGoroutine(b *testing.B) {
	z := benchZone(b)
	b.ReportAllocs()
	b.ResetTimer()
	done := make(chan struct{})
	go func() {
		for range b.N {
			p, err := z.AllocPages(0, gfp.Kernel)
			if err != nil {
				panic(err)
			}
			z.FreePages(p, 0)
		}
		close(done)
	}()
	<-done
}
