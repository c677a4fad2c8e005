package gfp_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
)

// FuzzBuddy drives a zone with a byte string of allocations and frees and
// checks it against a reference model, a bitmap of allocated pages, after
// every step:
//   - free + cached + allocated pages = the zone's pages;
//   - a new block overlaps nothing allocated and is aligned to its order;
//   - an allocation fails only if, with the caches drained, the model has
//     no free aligned run of that order (so the buddy lists lose nothing);
//   - freeing everything merges the zone back into its top-order blocks.
//
// The zone has an odd size so that the edges are exercised, and the flags
// ignore the watermarks so that only the buddy allocator decides.
func FuzzBuddy(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0x80, 0x81, 0x82, 0x83})
	f.Add([]byte{10, 9, 8, 3, 3, 0x80, 2, 1, 0x81, 0x80, 0x80})
	f.Add([]byte{5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5})
	f.Add([]byte{1, 0, 1, 0, 1, 0, 0x83, 0x81, 2, 2, 2, 0x90, 0x85, 4, 4, 0x82})
	f.Fuzz(func(t *testing.T, ops []byte) {
		krulestest.Check(t)
		const pages = 1000 // not a power of two
		z, err := gfp.NewZone(pages*gfp.PageSize, gfp.WithoutKswapd(), gfp.WithShards(2))
		require.NoError(t, err)
		initial := z.Stats().FreeBlocks
		flags := gfp.Memalloc | gfp.NoWarn
		first := z.StartPFN()

		used := make([]bool, pages)
		type block struct {
			p     *gfp.Page
			order int
		}
		var live []block
		allocated := 0
		check := func() {
			st := z.Stats()
			require.Equal(t, int64(pages), st.Free+st.PCP+int64(allocated), "free + cached + allocated = total")
		}
		hasRun := func(order int) bool {
			n := 1 << order
			for start := 0; start+n <= pages; start += n {
				free := true
				for i := start; i < start+n; i++ {
					if used[i] {
						free = false
						break
					}
				}
				if free {
					return true
				}
			}
			return false
		}
		for _, op := range ops {
			if op&0x80 == 0 {
				order := int(op) % (gfp.MaxOrder + 1)
				p, err := z.AllocPages(order, flags)
				if err != nil {
					z.DrainPages()
					p, err = z.AllocPages(order, flags)
				}
				if err != nil {
					require.False(t, hasRun(order), "order %d failed with a free aligned run in the model", order)
					check()
					continue
				}
				idx := int(p.PFN() - first)
				require.Zero(t, idx%(1<<order), "aligned")
				for i := idx; i < idx+1<<order; i++ {
					require.False(t, used[i], "page %d handed out twice", i)
					used[i] = true
				}
				allocated += 1 << order
				live = append(live, block{p, order})
			} else if len(live) > 0 {
				i := int(op&0x7f) % len(live)
				b := live[i]
				live[i] = live[len(live)-1]
				live = live[:len(live)-1]
				z.FreePages(b.p, b.order)
				idx := int(b.p.PFN() - first)
				for j := idx; j < idx+1<<b.order; j++ {
					used[j] = false
				}
				allocated -= 1 << b.order
			}
			check()
		}
		for _, b := range live {
			z.FreePages(b.p, b.order)
		}
		require.NoError(t, z.Close(), "every page came back")
		require.Equal(t, initial, z.Stats().FreeBlocks, "everything merged back to the top orders")
	})
}
