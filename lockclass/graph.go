package lockclass

import (
	"hash/maphash"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
)

// graph is one generation of a validator's state.
type graph struct {
	v       *Validator
	enabled atomic.Bool       // debug_locks
	mu      sync.Mutex        // graph_lock
	prof    contentionProfile // lock_stat's waiter stacks (contention.go)

	byKey      sync.Map // classKey -> *class, read lock-free
	classes    []*class // by index; nil slots are free
	nclasses   int
	maxIndex   int
	zapped     int
	zappedCh   int
	nameWarned bool

	entries     int // list entries in use (two per dependency)
	chains      atomic.Pointer[chainTable]
	chainList   []*chain
	chainHlocks int

	traces      map[uint64][]*trace
	nTraces     int
	traceWords  int
	maxDepth    atomic.Int32
	maxBFS      int
	bfsBuf      []bfsNode
	syncing     bool
	bfsGen      uint64
	cacheMisses atomic.Uint64

	primed sync.Map // *PrimeKey -> chan struct{}, closed once primed (PrimeOnce)

	// warned holds the WARN_ON_ONCE sites that fired: the kernel's static
	// __warned of each expansion. A reset validator warns afresh, as a
	// new boot does.
	warned sync.Map // site -> struct{}
}

type classKey struct {
	key *Key
	sub uint8
}

func newGraph(v *Validator) *graph {
	g := &graph{v: v, traces: map[uint64][]*trace{}}
	g.classes = make([]*class, 1) // index 0 is never used, as in the kernel
	g.chains.Store(newChainTable(1024))
	g.enabled.Store(true)
	return g
}

// retire marks every class of g stale, so locks caching them re-resolve.
func (g *graph) retire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.classes {
		if c != nil {
			c.state.Or(stStale)
		}
	}
}

func (g *graph) revive() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.classes {
		if c != nil {
			c.state.And(^uint32(stStale))
		}
	}
}

// off turns validation off (debug_locks_off) and reports whether this call
// did it, so only the first reporter prints.
func (g *graph) off() bool {
	if !g.enabled.CompareAndSwap(true, false) {
		return false
	}
	g.publishDebugLocks()
	g.mu.Lock()
	for _, c := range g.classes {
		if c != nil {
			c.state.Or(stOff)
		}
	}
	g.mu.Unlock()
	return true
}

// offLocked is off with g.mu held.
func (g *graph) offLocked() bool {
	if !g.enabled.CompareAndSwap(true, false) {
		return false
	}
	g.publishDebugLocks()
	for _, c := range g.classes {
		if c != nil {
			c.state.Or(stOff)
		}
	}
	return true
}

// publishDebugLocks hands the default validator's debug_locks to
// internal/task, where the root package's debug_show_all_locks
// (krules.ShowAllLocks, the hung-task report) reads it: the kernel's is
// the default validator's, and other validators' stay their own. Only the
// current graph speaks for its validator.
func (g *graph) publishDebugLocks() {
	if g.v == defaultValidator && g.v.g.Load() == g {
		task.SetDebugLocks(g.enabled.Load())
	}
}

// warnOnce reports whether the WARN_ON_ONCE at site (a caller's PC, or a
// name for a site inside lockclass) fires: the first time only.
func (g *graph) warnOnce(site any) bool {
	_, fired := g.warned.LoadOrStore(site, struct{}{})
	return !fired
}

// reportable decides whether a validation report may be printed: the first
// one turns validation off, unless the validator keeps going.
func (g *graph) reportable(locked bool) bool {
	if g.v.keepGoing {
		return g.enabled.Load()
	}
	if locked {
		return g.offLocked()
	}
	return g.off()
}

// edge is one dependency prev -> next (a lock_list entry, shared by the
// forward and the backward list).
type edge struct {
	from, to *class
	// dep holds the dependency types seen, one bit each (DEP_*_BIT).
	dep uint8
	// distance is 1 if the dependency was ever seen between adjacent held
	// locks; /proc/lockdep lists only those.
	distance int
	// trace is the stack of the acquisition that first recorded it.
	trace *trace
}

// Dependency types: is prev held shared (S) or exclusive (E), and is next
// taken as a recursive reader (R) or not (N). Bit = (prev.read == 0) +
// 2*(next.read != 2), as calc_dep.
const (
	depSR = 1 << iota
	depER
	depSN
	depEN
)

func calcDep(prevRead, nextRead uint8) uint8 {
	bit := 0
	if prevRead == 0 {
		bit++
	}
	if nextRead != 2 {
		bit += 2
	}
	return 1 << bit
}

// depName renders an edge's strongest type for the DOT export.
func depName(dep uint8) string {
	var s []string
	for _, d := range []struct {
		bit  uint8
		name string
	}{{depEN, "EN"}, {depSN, "SN"}, {depER, "ER"}, {depSR, "SR"}} {
		if dep&d.bit != 0 {
			s = append(s, d.name)
		}
	}
	return strings.Join(s, ",")
}

// bfsNode is one step of a search: the class reached, the edge and parent
// it was reached through, and whether every type left on that edge ends in
// a recursive read (only_xr).
type bfsNode struct {
	c      *class
	e      *edge
	parent int
	xr     bool
}

// bfs searches forward from root for a strong path to target (the cycle
// check of check_noncircular): a path on which no edge ending in a recursive
// read (-(xR)->) is followed by one leaving a lock held shared (-(Sx)->).
// It returns the search tree and the index of the node that matched, or -1;
// overflow when the queue outgrew the limit.
//
// The kernel marks a class visited the first time any path reaches it, so a
// class first reached through a recursive read cannot later be left through
// a shared edge even when a stronger path reaches it too; that can hide a
// real strong cycle depending on list order. This search keeps the two
// states apart (reached strongly, reached only through *R), so it finds a
// strong cycle whenever one exists, and the shortest one.
func (g *graph) bfs(root *class, rootXR bool, target *class, targetRead uint8) (nodes []bfsNode, found int, overflow bool) {
	g.bfsGen++
	gen := g.bfsGen
	nodes = append(g.bfsBuf[:0], bfsNode{c: root, parent: -1, xr: rootXR})
	defer func() { g.bfsBuf = nodes[:0] }()
	root.genAny = gen
	if !rootXR {
		root.genStrong = gen
	}
	conflict := func(xr bool) bool { return targetRead == 0 || !xr }
	if root == target && conflict(rootXR) {
		return nodes, 0, false
	}
	for head := 0; head < len(nodes); head++ {
		n := nodes[head]
		for _, e := range n.c.after {
			dep := e.dep
			if n.xr {
				dep &^= depSR | depSN
			}
			if dep == 0 {
				continue
			}
			xr := dep&(depSN|depEN) == 0
			to := e.to
			if to.genStrong == gen || xr && to.genAny == gen {
				continue
			}
			to.genAny = gen
			if !xr {
				to.genStrong = gen
			}
			nodes = append(nodes, bfsNode{c: to, e: e, parent: head, xr: xr})
			if to == target && conflict(xr) {
				return nodes, len(nodes) - 1, false
			}
			if q := len(nodes) - head - 1; q > g.maxBFS {
				g.maxBFS = q
				if q >= g.v.lim.BFSQueue {
					return nodes, -1, true
				}
			}
		}
	}
	return nodes, -1, false
}

// countDeps counts the classes reachable from c along strong paths,
// c included (lockdep_count_forward_deps / _backward_deps). g.mu held.
func (g *graph) countDeps(c *class, forward bool) int {
	g.bfsGen++
	gen := g.bfsGen
	type node struct {
		c    *class
		only bool // forward: only *R so far; backward: only S* so far
	}
	queue := []node{{c: c}}
	c.genAny, c.genStrong = gen, gen
	count := 1
	for i := 0; i < len(queue); i++ {
		n := queue[i]
		list := n.c.after
		if !forward {
			list = n.c.before
		}
		for _, e := range list {
			dep := e.dep
			var next *class
			var only bool
			if forward {
				if n.only {
					dep &^= depSR | depSN
				}
				only = dep&(depSN|depEN) == 0
				next = e.to
			} else {
				if n.only {
					dep &^= depSR | depER
				}
				only = dep&(depER|depEN) == 0
				next = e.from
			}
			if dep == 0 || next.genStrong == gen || only && next.genAny == gen {
				continue
			}
			if next.genAny != gen {
				count++
			}
			next.genAny = gen
			if !only {
				next.genStrong = gen
			}
			queue = append(queue, node{next, only})
		}
	}
	return count
}

// trace is a saved stack (struct lock_trace), shared by identical stacks.
type trace struct {
	pcs []uintptr
}

var traceSeed = maphash.MakeSeed()

// saveTrace captures the current stack once per validation (save_trace),
// deduplicated, within MAX_STACK_TRACE_ENTRIES. g.mu held.
func (g *graph) saveTrace() (*trace, *krules.Report) {
	buf := make([]uintptr, 64)
	buf = buf[:runtime.Callers(3, buf)]
	var h maphash.Hash
	h.SetSeed(traceSeed)
	for _, pc := range buf {
		var b [8]byte
		for i := range b {
			b[i] = byte(pc >> (8 * i))
		}
		h.Write(b[:])
	}
	sum := h.Sum64()
	for _, tr := range g.traces[sum] {
		if slices.Equal(tr.pcs, buf) {
			return tr, nil
		}
	}
	if g.traceWords+len(buf) > g.v.lim.StackTrace {
		if g.offLocked() {
			return nil, limitReport("BUG: MAX_STACK_TRACE_ENTRIES too low!")
		}
		return nil, nil
	}
	tr := &trace{pcs: slices.Clip(buf)}
	g.traces[sum] = append(g.traces[sum], tr)
	g.nTraces++
	g.traceWords += len(buf)
	return tr, nil
}
