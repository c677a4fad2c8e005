package lockclass_test

import (
	"sync"
	"testing"

	"github.com/krules/krules/lockclass"
)

// BenchmarkWW8 is bench's "WWMutex 8 in one ctx" figure, for profiling:
// eight WWMutexes taken and released in one acquire context.
func BenchmarkWW8(b *testing.B) {
	class := lockclass.NewWWClass("bench_ww8")
	ms := new([8]lockclass.WWMutex)
	for i := range ms {
		ms[i].Init(class)
	}
	ctx := new(lockclass.WWAcquireCtx)
	round := func() {
		ctx.Init(class)
		for i := range ms {
			if err := ms[i].Lock(ctx); err != nil {
				b.Fatal(err)
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

// BenchmarkSync8 is BenchmarkWW8's baseline: eight sync.Mutexes in order.
func BenchmarkSync8(b *testing.B) {
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
