package nonblock

import (
	"context"
	"runtime/trace"
	"strconv"

	"github.com/krules/krules/internal/task"
)

// Sections mark themselves as runtime/trace regions so that the execution
// tracer, and the trace checker (StartTraceCheck), can tell which goroutine was
// inside which section when it blocked. Each section entered while tracing is
// on opens one region, named after the kind of section and the depth it
// reached: "krules.non_block=2" is the second nested non-block section,
// "krules.preempt_count=1" an outermost atomic section. The depth in the name
// lets the checker print the kernel's non_block_count even when the outer
// sections were entered before tracing began (their regions are no-ops: a
// region started while tracing is off never appears in the trace).
//
// Go's trace requires regions to nest on each goroutine, but the kernel's two
// counters are independent: Start, StartAtomic, End, EndAtomic is legal. When
// a section ends while a section of the other kind entered after it is still
// open, the later regions are ended and opened again, marked "(reopened)" so
// that the checker keeps their original entry site.
//
// With tracing off, entering costs one atomic load (trace.IsEnabled) and
// leaving a length test.

const (
	regionPrefix   = "krules."
	nonBlockRegion = regionPrefix + "non_block="
	atomicRegion   = regionPrefix + "preempt_count="
	reopenedSuffix = " (reopened)"
	// commCategory is the trace.Log category that carries the goroutine's
	// krules.SetName name to the checker.
	commCategory = regionPrefix + "comm"
)

// regionNames holds the common names so that entering a section allocates
// nothing: [atomic][reopened][depth].
var regionNames = func() (n [2][2][9]string) {
	for a := range 2 {
		for r := range 2 {
			for d := 1; d < len(n[a][r]); d++ {
				n[a][r][d] = makeRegionName(a == 1, int32(d), r == 1)
			}
		}
	}
	return n
}()

func makeRegionName(atomic bool, depth int32, reopened bool) string {
	name := nonBlockRegion
	if atomic {
		name = atomicRegion
	}
	name += strconv.Itoa(int(depth))
	if reopened {
		name += reopenedSuffix
	}
	return name
}

func regionName(atomic bool, depth int32, reopened bool) string {
	if depth > 0 && int(depth) < len(regionNames[0][0]) {
		return regionNames[b2i(atomic)][b2i(reopened)][depth]
	}
	return makeRegionName(atomic, depth, reopened)
}

func b2i(v bool) int {
	if v {
		return 1
	}
	return 0
}

// openRegion opens the region of the section t just entered (depth is its
// new nesting depth). The caller checked that tracing is on.
func openRegion(t *task.Task, atomic bool, depth int32) {
	ctx := context.Background()
	if t.Name != "" {
		trace.Log(ctx, commCategory, t.Name)
	}
	r := trace.StartRegion(ctx, regionName(atomic, depth, false))
	t.Regions = append(t.Regions, task.SectionRegion{Region: r, Atomic: atomic, Depth: depth})
}

// closeRegion ends the region of the section t is leaving, whose depth was
// depth, if that section opened one. Regions of the other kind opened after
// it are ended first and opened again, so the trace stays properly nested.
func closeRegion(t *task.Task, atomic bool, depth int32) {
	i := len(t.Regions) - 1
	for i >= 0 && t.Regions[i].Atomic != atomic {
		i--
	}
	if i < 0 || t.Regions[i].Depth != depth {
		return // entered while tracing was off: no region
	}
	above := t.Regions[i+1:]
	for j := len(above) - 1; j >= 0; j-- {
		above[j].Region.End()
	}
	t.Regions[i].Region.End()
	n := i
	if trace.IsEnabled() {
		ctx := context.Background()
		for _, r := range above {
			r.Region = trace.StartRegion(ctx, regionName(r.Atomic, r.Depth, true))
			t.Regions[n] = r
			n++
		}
	}
	clear(t.Regions[n:]) // drop the references the slice keeps past its length
	t.Regions = t.Regions[:n]
}
