package gfp

import (
	"fmt"
	"strings"
	"sync/atomic"
)

// zoneStats are the counters bumped off the fast paths.
type zoneStats struct {
	highAllocs [NROrders]int64 // under z.mu
	highFrees  int64           // under z.mu

	failures      [NROrders]atomic.Int64
	allocStall    atomic.Int64
	pgscanDirect  atomic.Int64
	pgstealDirect atomic.Int64
	pgscanKswapd  atomic.Int64
	pgstealKswapd atomic.Int64
	slabsScanned  atomic.Int64
	kswapdWakeups atomic.Int64
	pageoutrun    atomic.Int64
	reserveDips   atomic.Int64
	injected      atomic.Int64
	slabInjected  atomic.Int64
	oomCalls      atomic.Int64

	pgscanDirectThrottle atomic.Int64
}

// Stats is a snapshot of a zone's state and counters, the information of
// /proc/vmstat, /proc/buddyinfo and /proc/zoneinfo for one zone. Counts are
// in pages unless a name says otherwise.
type Stats struct {
	Zone       string
	Managed    int64 // pages the zone manages
	Free       int64 // NR_FREE_PAGES: on the buddy lists
	PCP        int64 // cached on the per-CPU-style lists (not free)
	Watermarks Watermarks
	// FreeBlocks counts free blocks per order (buddyinfo).
	FreeBlocks [NROrders]int64

	PgAlloc  int64           // pgalloc_normal: pages allocated
	PgFree   int64           // pgfree: pages freed
	Allocs   [NROrders]int64 // allocations per order
	Failures [NROrders]int64 // allocation failures per order

	AllocStall    int64 // allocstall: direct reclaim entries
	PgScanDirect  int64 // shrinker objects scanned by direct reclaim
	PgStealDirect int64 // pages reclaimed by direct reclaim
	PgScanKswapd  int64 // shrinker objects scanned by kswapd
	PgStealKswapd int64 // pages reclaimed by kswapd
	SlabsScanned  int64 // slabs_scanned: shrinker objects scanned
	KswapdWakeups int64 // wake-ups delivered to kswapd
	PageOutRun    int64 // pageoutrun: kswapd balancing runs
	ReserveDips   int64 // allocations that left the zone below min
	OOMCalls      int64 // out-of-memory events (the OnOOM chain called)

	// PgScanDirectThrottle counts the direct reclaimers throttled
	// (pgscan_direct_throttle, by throttle_direct_reclaim).
	PgScanDirectThrottle int64

	FaultsInjected     int64 // fail_page_alloc failures
	SlabFaultsInjected int64 // failslab failures

	Kmallocs, Kfrees int64 // Alloc and Free calls served by size classes
	SlabPages        int64 // pages held by the size classes
}

// Stats returns a snapshot of the zone's counters.
func (z *Zone) Stats() Stats {
	st := Stats{
		Zone:       z.name,
		Managed:    int64(len(z.pages)),
		Free:       z.nrFree.Load(),
		Watermarks: z.Watermarks(),
	}
	for i := range z.shards {
		s := &z.shards[i]
		s.mu.Lock()
		st.PCP += int64(s.count)
		st.PgAlloc += s.ev.pgalloc
		st.PgFree += s.ev.pgfree
		for o, n := range s.ev.allocs {
			st.Allocs[o] += n
		}
		st.Kmallocs += s.ev.kmallocs
		st.Kfrees += s.ev.kfrees
		s.mu.Unlock()
	}
	z.mu.Lock()
	for o := range z.area {
		st.FreeBlocks[o] = int64(z.area[o].count)
		st.Allocs[o] += z.stats.highAllocs[o]
		st.PgAlloc += z.stats.highAllocs[o] << o
	}
	st.PgFree += z.stats.highFrees
	z.mu.Unlock()
	for ci := range z.classes {
		c := &z.classes[ci]
		c.mu.Lock()
		st.SlabPages += int64(c.nslabs) << c.order
		c.mu.Unlock()
	}
	for o := range st.Failures {
		st.Failures[o] = z.stats.failures[o].Load()
	}
	st.AllocStall = z.stats.allocStall.Load()
	st.PgScanDirect = z.stats.pgscanDirect.Load()
	st.PgScanDirectThrottle = z.stats.pgscanDirectThrottle.Load()
	st.PgStealDirect = z.stats.pgstealDirect.Load()
	st.PgScanKswapd = z.stats.pgscanKswapd.Load()
	st.PgStealKswapd = z.stats.pgstealKswapd.Load()
	st.SlabsScanned = z.stats.slabsScanned.Load()
	st.KswapdWakeups = z.stats.kswapdWakeups.Load()
	st.PageOutRun = z.stats.pageoutrun.Load()
	st.ReserveDips = z.stats.reserveDips.Load()
	st.OOMCalls = z.stats.oomCalls.Load()
	st.FaultsInjected = z.stats.injected.Load()
	st.SlabFaultsInjected = z.stats.slabInjected.Load()
	return st
}

// String prints the counters the way /proc/vmstat does, one "name value"
// a line in the kernel's order (zone, then node counters, then the events
// in enum vm_event_item's order); counters the kernel lacks follow, with a
// krules_ prefix.
func (s Stats) String() string {
	var b strings.Builder
	line := func(name string, v int64) { fmt.Fprintf(&b, "%s %d\n", name, v) }
	line("nr_free_pages", s.Free)
	line("nr_slab_unreclaimable", s.SlabPages)
	line("pgalloc_normal", s.PgAlloc)
	line("allocstall_normal", s.AllocStall)
	line("pgfree", s.PgFree)
	line("pgsteal_kswapd", s.PgStealKswapd)
	line("pgsteal_direct", s.PgStealDirect)
	line("pgscan_kswapd", s.PgScanKswapd)
	line("pgscan_direct", s.PgScanDirect)
	line("pgscan_direct_throttle", s.PgScanDirectThrottle)
	line("slabs_scanned", s.SlabsScanned)
	line("pageoutrun", s.PageOutRun)
	line("oom_kill", 0)
	line("krules_nr_free_pcp", s.PCP)
	line("krules_kswapd_wakeups", s.KswapdWakeups)
	line("krules_reserve_dips", s.ReserveDips)
	line("krules_oom_calls", s.OOMCalls)
	line("krules_fail_page_alloc", s.FaultsInjected)
	line("krules_failslab", s.SlabFaultsInjected)
	line("krules_kmalloc", s.Kmallocs)
	line("krules_kfree", s.Kfrees)
	for o := range s.Allocs {
		fmt.Fprintf(&b, "krules_alloc_order%d %d\n", o, s.Allocs[o])
	}
	for o := range s.Failures {
		fmt.Fprintf(&b, "krules_alloc_fail_order%d %d\n", o, s.Failures[o])
	}
	return b.String()
}

// BuddyInfo returns the zone's line of /proc/buddyinfo: free blocks per
// order, each followed by a space as frag_show_print prints them.
func (z *Zone) BuddyInfo() string {
	st := z.Stats()
	var b strings.Builder
	fmt.Fprintf(&b, "Node 0, zone %8s ", z.name)
	for _, n := range st.FreeBlocks {
		fmt.Fprintf(&b, "%6d ", n)
	}
	b.WriteByte('\n')
	return b.String()
}

// ZoneInfo returns the zone's section of /proc/zoneinfo.
func (z *Zone) ZoneInfo() string {
	st := z.Stats()
	var b strings.Builder
	fmt.Fprintf(&b, "Node 0, zone %8s\n", z.name)
	fmt.Fprintf(&b, "  pages free     %d\n", st.Free)
	fmt.Fprintf(&b, "        boost    0\n")
	fmt.Fprintf(&b, "        min      %d\n", st.Watermarks.Min)
	fmt.Fprintf(&b, "        low      %d\n", st.Watermarks.Low)
	fmt.Fprintf(&b, "        high     %d\n", st.Watermarks.High)
	fmt.Fprintf(&b, "        promo    %d\n", st.Watermarks.Promo)
	fmt.Fprintf(&b, "        spanned  %d\n", st.Managed)
	fmt.Fprintf(&b, "        present  %d\n", st.Managed)
	fmt.Fprintf(&b, "        managed  %d\n", st.Managed)
	fmt.Fprintf(&b, "        cma      0\n")
	fmt.Fprintf(&b, "        protection: (0, 0, 0, 0)\n")
	fmt.Fprintf(&b, "  pagesets\n")
	for i := range z.shards {
		s := &z.shards[i]
		s.mu.Lock()
		count := s.count
		s.mu.Unlock()
		fmt.Fprintf(&b, "    cpu: %d\n              count: %d\n              high:  %d\n              batch: %d\n", i, count, z.pcpHigh, z.pcpBatch)
	}
	fmt.Fprintf(&b, "  node_unreclaimable:  %d\n", boolInt(z.kswapd.failures.Load() >= MaxReclaimRetries))
	fmt.Fprintf(&b, "  start_pfn:           %d\n", z.startPFN)
	return b.String()
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}
