package gfp

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/splat"
	"github.com/krules/krules/lockclass"
)

// The allocator's reports: warn_alloc's failure report, WARN_ON_ONCE for
// misused flags, and bad_page for bad frees. Each is emitted only once the
// allocator's state is consistent again, since Emit may panic.

// warnOnce remembers which WARN_ON_ONCE sites of a zone have fired (the
// kernel's per-site static __warned); a new zone starts afresh.
type warnOnce struct{ fired atomic.Uint32 }

type warnSite uint32

// claim reports whether site has not fired yet, and marks it fired.
func (w *warnOnce) claim(site warnSite) bool {
	for {
		old := w.fired.Load()
		if old&uint32(site) != 0 {
			return false
		}
		if w.fired.CompareAndSwap(old, old|uint32(site)) {
			return true
		}
	}
}

const (
	warnOrderTooLarge warnSite = 1 << iota
	warnNoFailOrder
	warnNoFailNoReclaim
	warnNoFailMemalloc
	warnNoFailOOM
	warnVmallocZeroSize
	warnKvmallocTooLarge
	warnKfreeOrder0
)

// warnOnceGFP is WARN_ON_ONCE_GFP: a once-only WARNING that NoWarn keeps
// quiet (without using up the once).
func (z *Zone) warnOnceGFP(site warnSite, gfp Flags, format string, args ...any) {
	if gfp&NoWarn != 0 {
		return
	}
	z.warnOnceSite(site, gfp, format, args...)
}

// warnOnceSite is WARN_ON_ONCE.
func (z *Zone) warnOnceSite(site warnSite, gfp Flags, format string, args ...any) {
	if !z.once.claim(site) {
		return
	}
	msg := fmt.Sprintf(format, args...) + fmt.Sprintf(", mode:%#x(%s)", uint32(gfp), gfp.decode())
	krules.Emit(krules.Warn(krules.GFPMisuse, msg, 0))
}

// warnAlloc is warn_alloc(): the "page allocation failure" report with the
// zone's state, unless NoWarn. krules rate-limits it (10 s, burst 1).
func (z *Zone) warnAlloc(gfp Flags, order int) {
	z.warnAllocMsg(gfp, fmt.Sprintf("page allocation failure: order:%d", order))
}

// warnAllocMsg is warn_alloc with its message: the page allocator's, or
// vmalloc's "vmalloc error: size N, …".
func (z *Zone) warnAllocMsg(gfp Flags, msg string) {
	if gfp&NoWarn != 0 {
		return
	}
	headline := fmt.Sprintf("%s: %s, mode:%#x(%s), nodemask=(null)",
		krules.CurrentGoroutine().Name, msg, uint32(gfp), gfp.decode())
	b := krules.NewReport(krules.AllocFailure, headline, 0)
	b.Printf("%s,cpuset=/,mems_allowed=0\n", headline)
	b.Dump()
	z.showMem(&b.Builder)
	krules.Emit(b.Report())
}

// showMem writes the Mem-Info part of warn_alloc (__show_mem) for the zone:
// show_free_areas' zone line (the fields krules keeps, in the kernel's
// order), lowmem_reserve and the free blocks per order, then __show_mem's
// page totals (present pages, none highmem, none reserved).
func (z *Zone) showMem(b *strings.Builder) {
	st := z.Stats()
	b.WriteString("Mem-Info:\n")
	fmt.Fprintf(b, "Node 0 %s free:%dkB boost:0kB min:%dkB low:%dkB high:%dkB reserved_highatomic:0KB present:%dkB managed:%dkB free_pcp:%dkB\n",
		z.name, st.Free*4, st.Watermarks.Min*4, st.Watermarks.Low*4, st.Watermarks.High*4,
		st.Managed*4, st.Managed*4, st.PCP*4)
	fmt.Fprintf(b, "lowmem_reserve[]: 0 0 0 0\n")
	fmt.Fprintf(b, "Node 0 %s: ", z.name)
	total := int64(0)
	for o, n := range st.FreeBlocks {
		fmt.Fprintf(b, "%d*%dkB ", n, 4<<o)
		total += n << o
	}
	fmt.Fprintf(b, "= %dkB\n", total*4)
	fmt.Fprintf(b, "%d pages RAM\n", st.Managed)
	fmt.Fprintf(b, "0 pages HighMem/MovableOnly\n")
	fmt.Fprintf(b, "0 pages reserved\n")
}

// reportBadFree reports a FreePages (or kfree of a large block) that does
// not match the block's state: bad_page().
func (z *Zone) reportBadFree(p *Page, order int, want uint32) {
	s := p.state.Load()
	var reason string
	switch k := stateKind(s); {
	case uint(order) > MaxOrder:
		reason = fmt.Sprintf("freed with order %d > MAX_PAGE_ORDER", order)
	case k == pgFree || k == pgPCP || k == pgFreeing:
		reason = "page already free (double free)"
	case k == pgTail:
		reason = "not the head of an allocated block"
	case k != want:
		reason = fmt.Sprintf("freeing a %s page as %s", kindNames[k], kindNames[want])
	default:
		reason = fmt.Sprintf("freed with order %d, allocated with order %d", order, stateOrder(s))
	}
	z.badPage(p.PFN(), s, reason)
}

// reportForeignPage reports a page of another zone (or no zone) handed to
// this zone's FreePages.
func (z *Zone) reportForeignPage(p *Page) { reportForeignPage(z, p) }

func reportForeignPage(z *Zone, p *Page) {
	var pfn uint64
	reason := "page does not belong to any zone"
	if p.zone != nil && p.zone.indexOf(p) >= 0 {
		pfn = p.PFN()
		reason = fmt.Sprintf("page of zone %s freed to zone %s", p.zone.name, z.name)
	}
	if z == nil {
		z = p.zone
	}
	var s uint32
	if p.zone != nil && p.zone.indexOf(p) >= 0 {
		s = p.state.Load()
	}
	z.badPage(pfn, s, reason)
}

// badPageBurst and badPageQuiet are bad_page()'s rate limit: a burst of 60
// reports, then quiet until a minute after the first of the burst.
const (
	badPageBurst = 60
	badPageQuiet = time.Minute
)

// badPageLimit is bad_page()'s static resume, nr_shown and nr_unshown,
// which krules keeps per zone: a new zone starts with a fresh burst.
type badPageLimit struct {
	mu      sync.Mutex
	resume  time.Time // when a new burst may start: the burst's first + 1 min
	shown   int       // reports of this burst
	unshown int       // reports kept quiet since the burst filled
}

// allow is bad_page's decision at time now: whether the report is shown,
// and if so how many were kept quiet before it (to be said first). Once
// the burst is full, reports are quiet while now is before resume
// (time_before(jiffies, resume)); the first one after starts a new burst.
func (l *badPageLimit) allow(now time.Time) (show bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shown == badPageBurst {
		if now.Before(l.resume) {
			l.unshown++
			return false, 0
		}
		suppressed, l.unshown, l.shown = l.unshown, 0, 0
	}
	if l.shown == 0 {
		l.resume = now.Add(badPageQuiet)
	}
	l.shown++
	return true, suppressed
}

// badPage is bad_page(): the headline, dump_page's lines, print_modules'
// line and the stack, rate limited as the kernel does: of the bad pages of
// one zone, a burst of 60 is reported, then none until a minute after the
// first of the burst; the next report is preceded by "BUG: Bad page state:
// N messages suppressed" and carries N in its Suppressed. A page kept quiet
// is never emitted: no sink sees it (a claim, such as krulestest.Record,
// does not get it, hooks do not run, krules.ReportStats neither counts it
// in Reports nor in Suppressed, which are Emit's own limits), but it
// taints the process all the same (add_taint runs either way), and the
// caller leaves the page as it would after a report. A page of no zone has
// no limit to consult and is always reported.
func (z *Zone) badPage(pfn uint64, s uint32, reason string) {
	suppressed := 0
	if z != nil {
		show, n := z.badPages.allow(time.Now())
		if !show {
			splat.AddTaint(splat.TaintBadPage)
			lockclass.TaintNowUnreliable()
			return
		}
		suppressed = n
	}
	headline := fmt.Sprintf("BUG: Bad page state in process %s  pfn:%05x", krules.CurrentGoroutine().Name, pfn)
	b := krules.NewReport(krules.BadPage, headline, 0)
	if suppressed > 0 {
		b.Printf("BUG: Bad page state: %d messages suppressed\n", suppressed)
	}
	ref := 0
	if k := stateKind(s); k == pgAlloc || k == pgLarge || k == pgSlab {
		ref = 1
	}
	name := "-"
	if z != nil {
		name = z.name
	}
	b.Printf("%s\n", headline)
	b.Printf("page: refcount:%d mapcount:0 mapping:0000000000000000 index:0x0 pfn:%#x\n", ref, pfn)
	b.Printf("flags: 0x0(%s|order=%d|zone=%s)\n", kindNames[stateKind(s)%uint32(len(kindNames))], stateOrder(s), name)
	b.Printf("page dumped because: %s\n", reason)
	b.WriteString(splat.Modules)
	b.Dump()
	r := b.Report()
	r.Suppressed = suppressed
	krules.Emit(r)
	lockclass.TaintNowUnreliable()
}
