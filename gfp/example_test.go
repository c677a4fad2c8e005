package gfp_test

import (
	"errors"
	"fmt"

	"github.com/krules/krules/gfp"
)

func ExampleFlags_String() {
	fmt.Println(gfp.Kernel | gfp.Zero)
	fmt.Println(gfp.Atomic | gfp.NoWarn)
	fmt.Println(gfp.NoFS &^ gfp.DirectReclaim)
	// Output:
	// GFP_KERNEL|__GFP_ZERO
	// GFP_ATOMIC|__GFP_NOWARN
	// __GFP_IO|__GFP_KSWAPD_RECLAIM
}

// A NoFS scope makes every allocation of the goroutine behave as GFP_NOFS,
// however deep in library code it happens.
func ExampleNoFSSave() {
	saved := gfp.NoFSSave()
	fmt.Println(gfp.CurrentContext(gfp.Kernel))
	gfp.NoFSRestore(saved)
	fmt.Println(gfp.CurrentContext(gfp.Kernel))
	// Output:
	// GFP_NOFS
	// GFP_KERNEL
}

func ExampleZone_AllocPages() {
	z, err := gfp.NewZone(8 << 20)
	if err != nil {
		panic(err)
	}
	defer z.Close()
	p, err := z.AllocPages(2, gfp.Kernel|gfp.Zero)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(p.Bytes()), p.PFN()%4)
	z.FreePages(p, 2)

	// An allocation that may not sleep fails at once when the zone is
	// short; NoWarn keeps it from being reported.
	var blocks []*gfp.Page
	for {
		p, err := z.AllocPages(gfp.MaxOrder, gfp.Atomic|gfp.NoWarn)
		if err != nil {
			fmt.Println(errors.Is(err, gfp.ErrNoMemory), len(blocks))
			break
		}
		blocks = append(blocks, p)
	}
	for _, p := range blocks {
		z.FreePages(p, gfp.MaxOrder)
	}
	// Output:
	// 16384 0
	// true 1
}

// A cache gives memory back when the zone runs short: reclaim (kswapd or
// the allocating goroutine) calls Count and Scan.
func ExampleShrinker() {
	z, err := gfp.NewZone(4 << 20)
	if err != nil {
		panic(err)
	}
	defer z.Close()
	var cache [][]byte
	for range 100 {
		b, _ := z.Alloc(4096, gfp.Kernel)
		cache = append(cache, b)
	}
	s := &gfp.Shrinker{
		Name:  "example",
		Seeks: gfp.DefaultSeeks,
		Count: func(*gfp.ShrinkControl) uint64 { return uint64(len(cache)) },
		Scan: func(sc *gfp.ShrinkControl) uint64 {
			n := min(int(sc.NrToScan), len(cache))
			for _, b := range cache[len(cache)-n:] {
				z.Free(b)
			}
			cache = cache[:len(cache)-n]
			return uint64(n)
		},
	}
	if err := z.RegisterShrinker(s); err != nil {
		panic(err)
	}
	defer z.UnregisterShrinker(s)
	fmt.Println(z.Reclaim(32, gfp.Kernel) > 0, len(cache) < 100)
	for _, b := range cache {
		z.Free(b)
	}
	// Output: true true
}
