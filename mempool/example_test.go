package mempool_test

import (
	"fmt"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/mempool"
)

// A pool of pages guarantees that GFP_NOIO allocations (here in an I/O
// path) always succeed, even when the zone has nothing left: they wait
// for an element to come back instead.
func ExampleNewPagePool() {
	z, err := gfp.NewZone(4 << 20)
	if err != nil {
		panic(err)
	}
	defer z.Close()
	pool, err := mempool.NewPagePool(2, z, 0, mempool.WithName("bounce"))
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	page, err := pool.Alloc(gfp.NoIO)
	if err != nil {
		panic(err) // never: NoIO may sleep, so the pool never fails it
	}
	copy(page.Bytes(), "sector data")
	pool.Free(page)
	fmt.Println(pool.Stats().Reserve)
	// Output: 2
}
