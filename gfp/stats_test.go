package gfp_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
)

func TestStatsCountAndPrint(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 8<<20, gfp.WithName("DMA32"))
	p, err := z.AllocPages(2, gfp.Kernel)
	require.NoError(t, err)
	q, err := z.AllocPages(5, gfp.Kernel)
	require.NoError(t, err)
	st := z.Stats()
	require.Equal(t, "DMA32", st.Zone)
	require.Equal(t, int64(2048), st.Managed)
	require.Equal(t, int64(1), st.Allocs[2])
	require.Equal(t, int64(1), st.Allocs[5])
	require.GreaterOrEqual(t, st.PgAlloc, int64(4+32))
	require.Equal(t, st.Managed-4-32, st.Free+st.PCP)
	free := int64(0)
	for o, n := range st.FreeBlocks {
		free += n << o
	}
	require.Equal(t, st.Free, free, "buddyinfo adds up to nr_free_pages")

	text := st.String()
	require.Contains(t, text, fmt.Sprintf("nr_free_pages %d\n", st.Free))
	require.Contains(t, text, fmt.Sprintf("pgalloc_normal %d\n", st.PgAlloc))
	require.Contains(t, text, "allocstall_normal 0\n")
	require.Contains(t, text, "krules_alloc_order5 1\n")
	require.Regexp(t, regexp.MustCompile(`(?m)^pgscan_kswapd 0$`), text)
	var names []string
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if n := strings.Fields(l)[0]; !strings.HasPrefix(n, "krules_") {
			names = append(names, n)
		}
	}
	require.Equal(t, []string{"nr_free_pages", "nr_slab_unreclaimable", "pgalloc_normal", "allocstall_normal", "pgfree",
		"pgsteal_kswapd", "pgsteal_direct", "pgscan_kswapd", "pgscan_direct", "pgscan_direct_throttle", "slabs_scanned", "pageoutrun", "oom_kill"}, names,
		"/proc/vmstat's order: zone and node items, then enum vm_event_item's")

	require.Regexp(t, `^Node 0, zone    DMA32 ( {0,5}\d{1,6} ){11}\n$`, z.BuddyInfo(), "frag_show_print: \"%6lu \" per order")
	info := z.ZoneInfo()
	require.Contains(t, info, "Node 0, zone    DMA32\n  pages free     ")
	require.Contains(t, info, fmt.Sprintf("        min      %d\n", st.Watermarks.Min))
	require.Contains(t, info, "        managed  2048\n")
	require.Contains(t, info, "  pagesets\n    cpu: 0\n")

	z.FreePages(p, 2)
	z.FreePages(q, 5)
	require.Equal(t, st.PgFree+36, z.Stats().PgFree)
}

func TestDefaultZone(t *testing.T) {
	krulestest.Check(t)
	require.NoError(t, gfp.ResetDefault())
	z := gfp.Default()
	require.Same(t, z, gfp.Default(), "created once")
	require.Equal(t, gfp.DefaultZoneSize/gfp.PageSize, z.Pages())

	p, err := gfp.AllocPages(0, gfp.Kernel)
	require.NoError(t, err)
	require.Same(t, z, p.Zone())
	gfp.FreePages(p, 0)
	b, err := gfp.Alloc(100, gfp.Kernel)
	require.NoError(t, err)
	require.NotNil(t, z.PageOf(b))
	gfp.Free(b)
	held := accounted(z)
	v, err := gfp.Vmalloc(3*gfp.PageSize, gfp.Kernel)
	require.NoError(t, err)
	require.Len(t, v, 3*gfp.PageSize)
	require.True(t, z.IsVmalloc(v), "an area of the default zone")
	require.Equal(t, held-3, accounted(z))
	gfp.Vfree(v)
	require.Equal(t, held, accounted(z))
	kv, err := gfp.Kvmalloc(100, gfp.Kernel) // the slab has it
	require.NoError(t, err)
	require.False(t, z.IsVmalloc(kv))
	require.NotNil(t, z.PageOf(kv))
	gfp.Kvfree(kv)
	kv, err = gfp.Kvmalloc(2<<gfp.MaxOrder*gfp.PageSize, gfp.Kernel) // beyond the slab: vmalloc
	require.NoError(t, err)
	require.True(t, z.IsVmalloc(kv))
	gfp.Kvfree(kv)
	require.Equal(t, held, accounted(z))
	gfp.Vfree(nil) // vfree(NULL) and kvfree(NULL) do nothing
	gfp.Kvfree(nil)
	require.Equal(t, held, accounted(z))

	mine := newZone(t, 1<<20)
	prev := gfp.SetDefault(mine)
	require.Same(t, z, prev)
	require.NoError(t, prev.Close())
	require.Same(t, mine, gfp.Default())
	require.Same(t, mine, gfp.SetDefault(nil))
	require.NoError(t, gfp.ResetDefault(), "nothing to reset")
}

// ReserveDips counts the allocations that leave the zone below its min
// watermark: one that leaves exactly min free pages is not one of them.
func TestReserveDipsCountOnlyAllocationsBelowMin(t *testing.T) {
	krulestest.Check(t)
	z := reserveZone(t)
	pages := pressure(t, z)
	wm := z.Watermarks()
	require.Equal(t, wm.Min, z.Stats().Free)
	z.FreePages(pages[0], 0)
	pages[0] = nil
	before := z.Stats().ReserveDips
	p, err := z.AllocPages(0, gfp.Kernel)
	require.NoError(t, err)
	defer z.FreePages(p, 0)
	require.Equal(t, wm.Min, z.Stats().Free)
	require.Equal(t, before, z.Stats().ReserveDips, "down to min, not below")
	q, err := z.AllocPages(0, gfp.Atomic)
	require.NoError(t, err)
	defer z.FreePages(q, 0)
	require.Equal(t, before+1, z.Stats().ReserveDips)
}
