package nonblock

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/exp/trace"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/stack"
)

// Reading a trace snapshot. The checker replays the snapshot goroutine by
// goroutine: it follows the sections' regions (region.go) to know which
// sections each goroutine is in, and looks at every state transition a
// goroutine makes while inside one:
//
//   - Running -> Waiting is a block, the kernel's schedule() with the task
//     not TASK_RUNNING; the trace gives the reason ("chan receive", "sync",
//     "sleep", ...) and the stack. The reason "preempted" is not a block:
//     the garbage collector suspends goroutines that way to scan them.
//   - Running -> Syscall, later Syscall -> Runnable, is a system call that
//     blocked long enough for the scheduler to take its P away. A syscall
//     that returns to Running kept its P: it did not block.
//   - Running -> Runnable is preemption or a yield; the kernel does not
//     check those either.
//
// Blocks whose stack passes through the allocator (runtime.mallocgc, GC
// assist, GC start) are the runtime making the goroutine pay for garbage
// collection while it allocated: they are classed apart (AllocBlockInNonBlock).

// A finding is one way a goroutine blocked inside one section: the first
// such block, and how many times the same block (same reason and stack)
// happened in that section.
type finding struct {
	key     findingKey
	kind    krules.Kind
	goid    int64
	name    string        // the goroutine's krules.SetName name, if the trace carries it
	atomic  bool          // an atomic section (scheduling while atomic)
	depth   int32         // non_block_count or preempt_count at the block
	reason  string        // the trace's block reason, or "" for a syscall
	syscall time.Duration // for a syscall: how long it took
	pcs     []uintptr     // the blocking stack, as return addresses
	entry   uintptr       // the outermost section's entry site, as a return address; 0 if before the trace
	traced  uintptr       // the outermost traced entry site, when entry is unknown
	count   int
}

// findingKey identifies a finding across snapshots of one recording.
type findingKey struct {
	goid    int64
	atomic  bool
	section trace.Time // when the outermost traced region of the section began
	kind    krules.Kind
	reason  string
	stack   string
}

// traceResult is what one snapshot says.
type traceResult struct {
	findings []*finding
	// parents maps goroutines created inside the snapshot to their creator.
	parents map[int64]int64
}

// sectionRegion is one of our regions, open on a goroutine in the trace.
type sectionRegion struct {
	name     string
	atomic   bool
	depth    int32
	reopened bool
	begin    trace.Time
	site     uintptr // the first frame outside krules at the region's start
}

// entrySite remembers where the outermost section of one kind was entered.
type entrySite struct {
	site, saved uintptr
	known       bool
}

// gstate is what the replay knows about one goroutine.
type gstate struct {
	regions []sectionRegion
	entry   [2]entrySite // [non-block, atomic]
	name    string
	sys     *syscallStart
}

type syscallStart struct {
	at       trace.Time
	stk      blockStack
	sections []sectionView
}

// sectionView is a goroutine's section of one kind at one moment.
type sectionView struct {
	atomic bool
	depth  int32
	begin  trace.Time
	entry  uintptr
	traced uintptr
}

// parseTrace replays a snapshot.
func parseTrace(r io.Reader) (*traceResult, error) {
	rd, err := trace.NewReader(r)
	if err != nil {
		return nil, err
	}
	res := &traceResult{parents: map[int64]int64{}}
	gs := map[trace.GoID]*gstate{}
	get := func(g trace.GoID) *gstate {
		s := gs[g]
		if s == nil {
			s = &gstate{}
			gs[g] = s
		}
		return s
	}
	byKey := map[findingKey]*finding{}
	record := func(f *finding) {
		if prev := byKey[f.key]; prev != nil {
			prev.count++
			return
		}
		f.count = 1
		byKey[f.key] = f
		res.findings = append(res.findings, f)
	}
	for {
		ev, err := rd.ReadEvent()
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the execution trace: %w", err)
		}
		switch ev.Kind() {
		case trace.EventRegionBegin:
			if reg, ok := parseRegion(ev.Region().Type); ok {
				s := get(ev.Goroutine())
				reg.begin = ev.Time()
				reg.site = userSite(ev.Stack())
				s.beginRegion(reg)
			}
		case trace.EventRegionEnd:
			if reg, ok := parseRegion(ev.Region().Type); ok {
				get(ev.Goroutine()).endRegion(reg)
			}
		case trace.EventLog:
			if l := ev.Log(); l.Category == commCategory {
				get(ev.Goroutine()).name = l.Message
			}
		case trace.EventStateTransition:
			st := ev.StateTransition()
			if st.Resource.Kind != trace.ResourceGoroutine {
				continue
			}
			g := st.Resource.Goroutine()
			from, to := st.Goroutine()
			if from == to {
				continue // a status restated at a generation boundary, not a transition
			}
			switch {
			case from == trace.GoNotExist && (to == trace.GoRunnable || to == trace.GoWaiting):
				if parent := ev.Goroutine(); parent != trace.NoGoroutine {
					res.parents[int64(g)] = int64(parent)
				}
			case to == trace.GoNotExist:
				delete(gs, g)
			case from == trace.GoRunning && to == trace.GoWaiting:
				s := gs[g]
				if s == nil || len(s.regions) == 0 || st.Reason == "preempted" {
					continue
				}
				stk := stackOf(transitionStack(ev, st))
				for _, sec := range s.sections() {
					record(newFinding(int64(g), s.name, sec, st.Reason, stk, 0))
				}
			case from == trace.GoRunning && to == trace.GoSyscall:
				s := gs[g]
				if s == nil || len(s.regions) == 0 {
					continue
				}
				s.sys = &syscallStart{at: ev.Time(), stk: stackOf(transitionStack(ev, st)), sections: s.sections()}
			case from == trace.GoSyscall:
				s := gs[g]
				if s == nil || s.sys == nil {
					continue
				}
				sys := s.sys
				s.sys = nil
				if to != trace.GoRunnable {
					continue // returned with its P: it did not block
				}
				for _, sec := range sys.sections {
					record(newFinding(int64(g), s.name, sec, "", sys.stk, ev.Time().Sub(sys.at)))
				}
			}
		}
	}
}

func transitionStack(ev trace.Event, st trace.StateTransition) trace.Stack {
	if st.Stack != trace.NoStack {
		return st.Stack
	}
	return ev.Stack()
}

func newFinding(goid int64, name string, sec sectionView, reason string, stk blockStack, syscall time.Duration) *finding {
	kind := krules.ScheduleInNonBlock
	if stk.alloc || reason == "GC mark assist wait for work" {
		kind = krules.AllocBlockInNonBlock
	}
	pcs := stk.pcs
	return &finding{
		key: findingKey{
			goid: goid, atomic: sec.atomic, section: sec.begin, kind: kind,
			reason: reason, stack: fmt.Sprint(pcs),
		},
		kind: kind, goid: goid, name: name, atomic: sec.atomic, depth: sec.depth,
		reason: reason, syscall: syscall, pcs: pcs, entry: sec.entry, traced: sec.traced,
	}
}

// inAllocator reports whether a stack passes through the allocator's calls
// into the garbage collector: an assist, or the allocation that starts a
// GC cycle.
func inAllocator(f trace.StackFrame) bool {
	return strings.HasPrefix(f.Func, "runtime.mallocgc") || f.Func == "runtime.gcAssistAlloc" ||
		f.Func == "runtime.gcStart"
}

// parseRegion recognises the regions sections open (region.go).
func parseRegion(name string) (sectionRegion, bool) {
	reg := sectionRegion{name: name}
	rest, ok := strings.CutPrefix(name, nonBlockRegion)
	if !ok {
		rest, ok = strings.CutPrefix(name, atomicRegion)
		if !ok {
			return reg, false
		}
		reg.atomic = true
	}
	rest, reg.reopened = strings.CutSuffix(rest, reopenedSuffix)
	d, err := strconv.ParseInt(rest, 10, 32)
	if err != nil || d <= 0 {
		return reg, false
	}
	reg.depth = int32(d)
	return reg, true
}

func (s *gstate) beginRegion(reg sectionRegion) {
	e := &s.entry[b2i(reg.atomic)]
	if reg.depth == 1 {
		switch {
		case !reg.reopened:
			e.site, e.known = reg.site, true
		case e.saved != 0:
			e.site, e.known = e.saved, true // the same section, opened again
		}
	}
	s.regions = append(s.regions, reg)
}

func (s *gstate) endRegion(reg sectionRegion) {
	n := len(s.regions)
	if n == 0 || s.regions[n-1].name != reg.name {
		return // began before the snapshot: the trace never said it was open
	}
	s.regions = s.regions[:n-1]
	if reg.depth == 1 {
		e := &s.entry[b2i(reg.atomic)]
		if e.known {
			e.saved = e.site
		}
		e.known = false
	}
}

// sections returns the goroutine's open sections: the non-block one first,
// then the atomic one, as the kernel's schedule_debug checks them.
func (s *gstate) sections() []sectionView {
	var views []sectionView
	for _, atomic := range []bool{false, true} {
		var v *sectionView
		for _, reg := range s.regions {
			if reg.atomic != atomic {
				continue
			}
			if v == nil {
				v = &sectionView{atomic: atomic, begin: reg.begin, traced: reg.site}
			}
			v.depth = reg.depth
		}
		if v == nil {
			continue
		}
		if e := s.entry[b2i(atomic)]; e.known {
			v.entry = e.site
		}
		views = append(views, *v)
	}
	return views
}

// userSite returns the frame that entered a section, as a return address
// (what stack.FormatPC prints): the first frame of stk outside krules and
// the runtime, or, when krules itself entered the section (the OOM
// reaper's notifier calls), the first frame outside the runtime and the
// section code, the library function that called nonblock.Start, as the
// kernel names whatever code called preempt_disable.
func userSite(stk trace.Stack) uintptr {
	var entered uintptr
	for f := range stk.Frames() {
		if strings.HasPrefix(f.Func, "runtime.") || strings.HasPrefix(f.Func, "runtime/trace.") {
			continue
		}
		if stack.IsLibrary(f.Func, f.File) {
			if entered == 0 && !strings.HasPrefix(f.Func, nonblockPkg) {
				entered = uintptr(f.PC) + 1
			}
			continue
		}
		return uintptr(f.PC) + 1
	}
	return entered
}

// nonblockPkg prefixes the functions of this package, whose frames (Start,
// openRegion) are the section's own code, never its entry site.
const nonblockPkg = "github.com/krules/krules/nonblock."

// blockStack is the stack of a block.
type blockStack struct {
	pcs   []uintptr
	alloc bool // it passes through the allocator (inAllocator)
}

// stackOf turns a trace stack into the return addresses runtime.Callers
// would have given: the trace resolved them to call PCs (one less), inlined
// frames included, so adding one back makes runtime.CallersFrames print the
// same frames again.
func stackOf(stk trace.Stack) blockStack {
	var b blockStack
	for f := range stk.Frames() {
		b.pcs = append(b.pcs, uintptr(f.PC)+1)
		b.alloc = b.alloc || inAllocator(f)
	}
	return b
}
