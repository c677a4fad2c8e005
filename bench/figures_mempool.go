package main

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/mempool"
)

// mempoolFigures are the pool's two paths (mempool_alloc's): when the allocator
// succeeds the pool should cost little beside the allocator alone; when it
// fails, the reserve should cost little beside a sync.Pool.
var mempoolFigures = []figure{
	{
		Name: "mempool Alloc+Free, allocator ok", Baseline: "kmalloc 64 B", Target: 2, MaxAllocs: 0,
		base: withZone(func(z *gfp.Zone) func() {
			return func() {
				b, err := z.Alloc(64, gfp.Kernel)
				if err != nil {
					panic(err)
				}
				z.Free(b)
			}
		}),
		rules: withZone(func(z *gfp.Zone) func() {
			p, err := mempool.NewKmallocPool(4, z, 64, mempool.WithDebug(false))
			if err != nil {
				panic(err)
			}
			return func() {
				b, err := p.Alloc(gfp.Kernel)
				if err != nil {
					panic(err)
				}
				p.Free(b)
			}
		}),
	},
	{
		Name: "mempool Alloc+Free, from reserve", Baseline: "sync.Pool", Target: 3, MaxAllocs: 0,
		base: func(b *testing.B) {
			pool := sync.Pool{New: func() any { return new(int) }}
			loop(func() { pool.Put(pool.Get().(*int)) })(b)
		},
		rules: func(b *testing.B) {
			// The allocator fills the reserve, then never succeeds again.
			fail := false
			p, err := mempool.New(4, func(gfp.Flags) (*int, error) {
				if fail {
					return nil, errNoMem
				}
				return new(int), nil
			}, func(*int) {}, mempool.WithDebug(false))
			if err != nil {
				panic(err)
			}
			fail = true
			loop(func() {
				x, err := p.Alloc(gfp.Kernel)
				if err != nil {
					panic(err)
				}
				p.Free(x)
			})(b)
		},
	},
}

var errNoMem = errors.New("no memory")

// demonstrateMempool shows the classic mempool deadlock: a goroutine that
// holds the pool's only element and waits for a second one.
func demonstrateMempool(w io.Writer) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "5. A goroutine that holds a mempool element and waits for a second one from the same pool:")
	reports := krules.Collect(func() {
		fail := false
		p, err := mempool.New(1, func(gfp.Flags) (*int, error) {
			if fail {
				return nil, errNoMem
			}
			return new(int), nil
		}, func(*int) {}, mempool.WithName("bio"), mempool.WithDebug(true), mempool.WithTimeout(20*time.Millisecond))
		if err != nil {
			panic(err)
		}
		fail = true
		first := make(chan *int)
		done := make(chan struct{})
		krules.Go("kworker/u4:2", func() {
			defer close(done)
			x, _ := p.Alloc(gfp.NoIO)
			first <- x
			y, _ := p.Alloc(gfp.NoIO) // waits while holding x
			p.Free(y)
		})
		x := <-first
		time.Sleep(50 * time.Millisecond) // past the pool's timeout
		p.Free(x)
		<-done
		_ = p.Close()
	})
	for _, r := range reports {
		fmt.Fprintln(w)
		fmt.Fprint(w, indent(r.Text))
	}
}
