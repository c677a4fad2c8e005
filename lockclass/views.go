package lockclass

import (
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"

	"github.com/krules/krules"
)

// The text views of /proc/lockdep, /proc/lockdep_chains and
// /proc/lockdep_stats (kernel/locking/lockdep_proc.c), a DOT export of the
// class graph, and an http.Handler serving them. Keys print as addresses,
// as %p does.

// noProcFile is the error of a view of a file that a CONFIG_LOCKDEP=n
// kernel does not have (-tags krules_nolockdep): kernel/locking/Makefile
// builds lockdep_proc.c, which makes /proc/lockdep, /proc/lockdep_chains,
// /proc/lockdep_stats and /proc/lock_stat, only with CONFIG_LOCKDEP, so
// opening them fails with ENOENT.
func noProcFile(name string) error {
	return &fs.PathError{Op: "open", Path: "/proc/" + name, Err: fs.ErrNotExist}
}

func keyAddr(c *class) uintptr {
	return uintptr(keyPtr(c.key)) + uintptr(c.sub)
}

// WriteClasses writes /proc/lockdep: every class with its forward and
// backward dependency counts and usage, then its direct dependencies.
// Built with -tags krules_nolockdep it writes nothing and returns an error
// satisfying errors.Is(err, fs.ErrNotExist): there is no /proc/lockdep.
func (v *Validator) WriteClasses(w io.Writer) error {
	if !compiledIn {
		return noProcFile("lockdep")
	}
	var b strings.Builder
	b.WriteString("all lock classes:\n")
	g := v.graph()
	g.mu.Lock()
	for _, c := range g.classes {
		if c == nil {
			continue
		}
		fmt.Fprintf(&b, "%016x FD:%5d BD:%5d %s: %s\n", keyAddr(c), g.countDeps(c, true), g.countDeps(c, false), c.usageChars(), c.displayName())
		for _, e := range c.after {
			if e.distance == 1 {
				fmt.Fprintf(&b, " -> [%016x] %s\n", keyAddr(e.to), e.to.displayName())
			}
		}
		b.WriteString("\n")
	}
	g.mu.Unlock()
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteChains writes /proc/lockdep_chains: every cached chain, its classes
// in acquisition order. Built with -tags krules_nolockdep it writes nothing
// and returns an error satisfying errors.Is(err, fs.ErrNotExist).
func (v *Validator) WriteChains(w io.Writer) error {
	if !compiledIn {
		return noProcFile("lockdep_chains")
	}
	var b strings.Builder
	g := v.graph()
	g.mu.Lock()
	if g.chainHlocks >= g.v.lim.ChainHlocks {
		b.WriteString("(buggered) ")
	}
	b.WriteString("all lock chains:\n")
	for _, ch := range g.chainList {
		b.WriteString("irq_context: 0\n")
		for _, h := range ch.hlocks {
			if h.c.state.Load()&stStale != 0 && h.c.g == g {
				continue
			}
			fmt.Fprintf(&b, "[%016x] %s\n", keyAddr(h.c), h.c.displayName())
		}
		b.WriteString("\n")
	}
	g.mu.Unlock()
	_, err := io.WriteString(w, b.String())
	return err
}

// Stats are the numbers of /proc/lockdep_stats that tests and tools use.
type Stats struct {
	Classes, MaxClasses   int
	Entries, MaxEntries   int // list entries: two per direct dependency
	Chains, MaxChains     int
	ChainHlocks           int
	StackTraceEntries     int
	StackTraces           int
	MaxLockDepth          int
	MaxBFSQueueDepth      int
	MaxClassIndex         int
	ZappedClasses         int
	ZappedChains          int
	ChainCacheMisses      uint64
	DebugLocks            bool
	IndirectDependencies  int
	Unused, Uncategorized int
	WriteUsed, ReadUsed   int // classes taken for write / read (the "-unsafe" counts)
}

// Stats returns the validator's counters.
func (v *Validator) Stats() Stats {
	g := v.graph()
	g.mu.Lock()
	defer g.mu.Unlock()
	s := Stats{
		Classes: g.nclasses, MaxClasses: v.lim.Classes,
		Entries: g.entries, MaxEntries: v.lim.Entries,
		Chains: len(g.chainList), MaxChains: v.lim.Chains,
		ChainHlocks: g.chainHlocks, StackTraceEntries: g.traceWords, StackTraces: g.nTraces,
		MaxLockDepth: int(g.maxDepth.Load()), MaxBFSQueueDepth: g.maxBFS, MaxClassIndex: g.maxIndex,
		ZappedClasses: g.zapped, ZappedChains: g.zappedCh, ChainCacheMisses: g.cacheMisses.Load(),
		DebugLocks: g.enabled.Load(),
	}
	for _, c := range g.classes {
		if c == nil {
			continue
		}
		s.IndirectDependencies += g.countDeps(c, true)
		u := c.usage.Load()
		switch {
		case u == 0:
			s.Unused++
		case u == usedBit:
			s.Uncategorized++
		}
		if u&enabledW != 0 {
			s.WriteUsed++
		}
		if u&enabledR != 0 {
			s.ReadUsed++
		}
	}
	return s
}

// WriteStats writes /proc/lockdep_stats. Built with -tags krules_nolockdep
// it writes nothing and returns an error satisfying errors.Is(err,
// fs.ErrNotExist).
func (v *Validator) WriteStats(w io.Writer) error {
	if !compiledIn {
		return noProcFile("lockdep_stats")
	}
	s := v.Stats()
	var b strings.Builder
	line := func(label string, n any) { fmt.Fprintf(&b, " %-31s%11v\n", label+":", n) }
	maxLine := func(label string, n, m int) { fmt.Fprintf(&b, " %-31s%11d [max: %d]\n", label+":", n, m) }
	maxLine("lock-classes", s.Classes, s.MaxClasses)
	maxLine("direct dependencies", s.Entries, s.MaxEntries)
	line("indirect dependencies", s.IndirectDependencies)
	line("all direct dependencies", s.Entries)
	maxLine("dependency chains", s.Chains, s.MaxChains)
	maxLine("dependency chain hlocks used", s.ChainHlocks, v.lim.ChainHlocks)
	line("dependency chain hlocks lost", 0)
	line("in-hardirq chains", 0)
	line("in-softirq chains", 0)
	line("in-process chains", s.Chains)
	maxLine("stack-trace entries", s.StackTraceEntries, v.lim.StackTrace)
	line("number of stack traces", s.StackTraces)
	line("number of stack hash chains", s.StackTraces)
	line("combined max dependencies", s.Chains+1)
	line("hardirq-safe locks", 0)
	line("hardirq-unsafe locks", s.WriteUsed)
	line("softirq-safe locks", 0)
	line("softirq-unsafe locks", s.WriteUsed)
	line("irq-safe locks", 0)
	line("irq-unsafe locks", s.WriteUsed)
	line("hardirq-read-safe locks", 0)
	line("hardirq-read-unsafe locks", s.ReadUsed)
	line("softirq-read-safe locks", 0)
	line("softirq-read-unsafe locks", s.ReadUsed)
	line("irq-read-safe locks", 0)
	line("irq-read-unsafe locks", s.ReadUsed)
	line("uncategorized locks", s.Uncategorized)
	line("unused locks", s.Unused)
	line("max locking depth", s.MaxLockDepth)
	line("max bfs queue depth", s.MaxBFSQueueDepth)
	line("max lock class index", s.MaxClassIndex)
	line("chain lookup misses", s.ChainCacheMisses)
	debug := 0
	if s.DebugLocks {
		debug = 1
	}
	line("debug_locks", debug)
	b.WriteString("\n")
	line("zapped classes", s.ZappedClasses)
	line("zapped lock chains", s.ZappedChains)
	line("large chain blocks", 0)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteDOT writes the class graph in Graphviz DOT: one node per class, one
// edge per direct dependency labelled with its types (EN, SN, ER, SR).
func (v *Validator) WriteDOT(w io.Writer) error {
	var b strings.Builder
	b.WriteString("digraph lockdep {\n\tnode [shape=box];\n")
	if compiledIn {
		g := v.graph()
		g.mu.Lock()
		for _, c := range g.classes {
			if c != nil {
				fmt.Fprintf(&b, "\tc%d [label=%q];\n", c.idx, c.displayName())
			}
		}
		for _, c := range g.classes {
			if c == nil {
				continue
			}
			for _, e := range c.after {
				fmt.Fprintf(&b, "\tc%d -> c%d [label=%q];\n", c.idx, e.to.idx, depName(e.dep))
			}
		}
		g.mu.Unlock()
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Handler serves v's views (the default validator's when v is nil) the way
// net/http/pprof serves profiles; mount it at /debug/lockdep/:
//
//	http.Handle("/debug/lockdep/", lockclass.Handler(nil))
//
// It serves lockdep, lockdep_chains, lockdep_stats, locks (krules.ShowAllLocks), lock_stat (a POST or PUT
// of "0" clears it first) and graph.dot, and an
// index at the root. Built with -tags krules_nolockdep (CONFIG_LOCKDEP=n)
// the five the kernel then lacks (the /proc files and SysRq-d, which
// drivers/tty/sysrq.c registers only with CONFIG_LOCKDEP) are not found.
func Handler(v *Validator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		val := v
		if val == nil {
			val = Default()
		}
		name := r.URL.Path
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			name = name[i+1:]
		}
		switch name {
		case "lockdep", "lockdep_chains", "lockdep_stats", "lock_stat", "locks":
			if !compiledIn {
				http.NotFound(w, r)
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch name {
		case "lockdep":
			val.WriteClasses(w)
		case "lockdep_chains":
			val.WriteChains(w)
		case "lockdep_stats":
			val.WriteStats(w)
		case "lock_stat":
			// Writing "0" clears the statistics, as lock_stat_write does.
			if r.Method == http.MethodPost || r.Method == http.MethodPut {
				var c [1]byte
				if n, _ := r.Body.Read(c[:]); n == 1 && c[0] == '0' {
					val.ClearLockStat()
				}
			}
			val.WriteLockStat(w)
		case "contention":
			w.Header().Set("Content-Type", "application/octet-stream")
			val.WriteContentionProfile(w)
		case "locks":
			// SysRq-d: debug_show_all_locks.
			krules.ShowAllLocks(w)
		case "graph.dot":
			w.Header().Set("Content-Type", "text/vnd.graphviz; charset=utf-8")
			val.WriteDOT(w)
		case "":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, `<html><head><title>/debug/lockdep/</title></head><body>
<p>lockdep views:</p><ul>
<li><a href="lockdep">lockdep</a>: classes and direct dependencies</li>
<li><a href="lockdep_chains">lockdep_chains</a>: cached lock chains</li>
<li><a href="lockdep_stats">lockdep_stats</a>: counters and limits</li>
<li><a href="lock_stat">lock_stat</a>: contentions, wait and hold times (POST 0 clears)</li>
<li><a href="contention">contention</a>: lock_stat's waits as a pprof profile</li>
<li><a href="locks">locks</a>: every held lock in the system (SysRq-d)</li>
<li><a href="graph.dot">graph.dot</a>: the class graph for Graphviz</li>
</ul></body></html>
`)
		default:
			http.NotFound(w, r)
		}
	})
}
