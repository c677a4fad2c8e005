package lockclass

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
)

// lock_stat (CONFIG_LOCK_STAT; kernel/locking/lockdep.c lock_contended,
// lock_acquired, lock_release_holdtime; kernel/locking/lockdep_proc.c
// lock_stat_show). While the switch is on every tracked acquisition stamps
// its held-lock entry (holdtime_stamp) and every release adds the hold time
// to its class; an acquisition that has to wait counts a contention at the
// waiter's site and at the holder's (the contention and contending points),
// and its wait time. While it is off the cached lock paths pay one branch
// each (the stamp and the release test a word they touch anyway).

// lockStat is the kernel's lock_stat sysctl (/proc/sys/kernel/lock_stat):
// one switch for every validator, as in the kernel.
var lockStat switchWord

// SetLockStat turns lock statistics on or off, as writing 1 or 0 to
// /proc/sys/kernel/lock_stat does, and returns the previous setting.
// Statistics gathered so far are kept; ClearLockStat clears them.
func SetLockStat(on bool) bool {
	if on {
		statClockInit()
	}
	return lockStat.Swap(on)
}

// LockStatEnabled reports whether lock statistics are being gathered: never
// when built with -tags krules_nolockdep, where CONFIG_LOCK_STAT, which
// selects CONFIG_LOCKDEP, cannot be set.
func LockStatEnabled() bool { return compiledIn && lockStat.Load() }

// lockstatPoints is LOCKSTAT_POINTS: the call sites kept per class.
const lockstatPoints = 4

// Bounce indexes (enum bounce_type).
const (
	bounceAcquiredWrite = iota
	bounceAcquiredRead
	bounceContendedWrite
	bounceContendedRead
)

// lockTime is struct lock_time: a count and min/max/total in nanoseconds.
type lockTime struct {
	nr, total, min, max atomic.Int64
}

func (lt *lockTime) add(d int64) {
	if d < 0 {
		d = 0
	}
	lt.total.Add(d)
	for m := lt.min.Load(); (m == 0 || d < m) && !lt.min.CompareAndSwap(m, d); m = lt.min.Load() {
	}
	for m := lt.max.Load(); d > m && !lt.max.CompareAndSwap(m, d); m = lt.max.Load() {
	}
	lt.nr.Add(1) // last: a reader seeing nr sees the time it counts
}

func (lt *lockTime) clear() { lt.nr.Store(0); lt.total.Store(0); lt.min.Store(0); lt.max.Store(0) }

// classStat is a class's struct lock_class_stats plus its contention and
// contending points (which the kernel keeps in struct lock_class).
type classStat struct {
	wait, hold [2]lockTime // [write, read]
	bounces    [4]atomic.Int64

	mu                     sync.Mutex // the points; taken only by waiters
	contention, contending [lockstatPoints]statPoint
}

type statPoint struct {
	ip uintptr
	n  int64
}

// addPoint is lock_point: the slot of ip, taking a free one if there is
// room; a site that finds no room is not counted, as in the kernel.
func addPoint(pts *[lockstatPoints]statPoint, ip uintptr) {
	if ip == 0 {
		return
	}
	for i := range pts {
		if pts[i].ip == 0 {
			pts[i].ip = ip
		}
		if pts[i].ip == ip {
			pts[i].n++
			return
		}
	}
}

func (s *classStat) clear() {
	for i := range 2 {
		s.wait[i].clear()
		s.hold[i].clear()
	}
	for i := range s.bounces {
		s.bounces[i].Store(0)
	}
	s.mu.Lock()
	s.contention, s.contending = [lockstatPoints]statPoint{}, [lockstatPoints]statPoint{}
	s.mu.Unlock()
}

// mapStat is a lock instance's part of lock_stat: lockdep_map's cpu and ip,
// with goroutines for CPUs (a bounce is a lock taken by another goroutine
// than the last).
//
// The lock paths annotate an acquisition before they wait for the lock, as
// lock_acquire comes before lock_contended in the kernel, so by the time a
// waiter counts its contention it is itself the last acquirer; prev and
// prevIP keep the holder it is waiting for.
type mapStat struct {
	last, prev atomic.Int64   // the last acquirer's goroutine, the one before
	ip, prevIP atomic.Uintptr // their acquisition sites
}

func side(read uint8) int {
	if read != 0 {
		return 1
	}
	return 0
}

// statAcquired is lock_acquired for an acquisition that did not wait: the
// entry's hold time starts now. h is t's new entry.
//
//go:noinline
func statAcquired(t *task.Task, h *task.HeldLock) {
	h.Stamp = statNow()
	m, c := (*Map)(h.Instance), (*class)(h.Class)
	if last := m.stat.last.Load(); last != t.ID {
		if last != 0 { // the first acquisition bounces from nowhere
			c.stat.bounces[bounceAcquiredWrite+side(h.Read)].Add(1)
		}
		m.stat.prev.Store(last)
		m.stat.prevIP.Store(m.stat.ip.Load())
		m.stat.last.Store(t.ID)
	}
	if m.stat.ip.Load() != h.Site { // a store only when the site changes
		m.stat.ip.Store(h.Site)
	}
}

// releaseStamped is the release of m's entry on top of t's stack, stamped
// while lock_stat was on: its hold time, then the cached pop that the stamp
// kept it from. It reports whether it released m.
//
//go:noinline
func releaseStamped(m *Map, t *task.Task) bool {
	n := len(t.Lockdep.Held) - 1
	if n < 0 || t.Lockdep.Held[n].Stamp == 0 || t.Lockdep.Held[n].Instance != unsafe.Pointer(m) {
		return false
	}
	statReleased(&t.Lockdep.Held[n])
	if !popTop(t, m) {
		return false
	}
	t.ReleaseIfEmpty()
	return true
}

// statReleased is lock_release_holdtime: h, stamped while lock_stat was on,
// is being released.
//
//go:noinline
func statReleased(h *task.HeldLock) {
	(*class)(h.Class).stat.hold[side(h.Read)].add(statNanos(statNow() - h.Stamp))
	h.Stamp = 0
}

// contention is what a waiter remembers between lock_contended and
// lock_acquired.
type contention struct {
	t     *task.Task
	start int64
	rec   *contentionRecord // the waiter's stack in the contention profile
}

// statContended is lock_contended: the caller, whose acquisition of m is
// annotated (its entry is on its stack), is about to wait for it. It returns
// what statWaited needs, or a zero contention if m is not tracked.
func statContended(m *Map) contention {
	t := task.Lookup()
	i := findHeld(t, m)
	if i < 0 {
		return contention{}
	}
	h := &t.Lockdep.Held[i]
	c := (*class)(h.Class)
	s := &c.stat
	holder, ip := m.stat.last.Load(), m.stat.ip.Load()
	if holder == t.ID { // our own annotation: the holder is the one before
		holder, ip = m.stat.prev.Load(), m.stat.prevIP.Load()
	}
	if holder != 0 && holder != t.ID {
		s.bounces[bounceContendedWrite+side(h.Read)].Add(1)
	}
	s.mu.Lock()
	addPoint(&s.contention, h.Site)
	addPoint(&s.contending, ip)
	s.mu.Unlock()
	return contention{t: t, start: statNow(), rec: c.g.prof.contended()}
}

// statWaited is the rest of lock_acquired for an acquisition that waited:
// the wait time, and the hold time starting now.
func statWaited(m *Map, w contention) {
	if w.t == nil {
		return
	}
	i := findHeld(w.t, m)
	if i < 0 {
		return
	}
	h := &w.t.Lockdep.Held[i]
	now := statNow()
	waited := statNanos(now - w.start)
	(*class)(h.Class).stat.wait[side(h.Read)].add(waited)
	w.rec.waited(waited)
	h.Stamp = now // the hold starts now; the acquisition was counted when annotated
}

// ClearLockStat clears v's lock statistics, as writing 0 to /proc/lock_stat
// does (lock_stat_write, clear_lock_stats). Locks held meanwhile still add
// their hold times when released.
func (v *Validator) ClearLockStat() {
	if !compiledIn {
		return
	}
	g := v.graph()
	g.mu.Lock()
	cs := append([]*class(nil), g.classes...)
	g.mu.Unlock()
	for _, c := range cs {
		if c != nil {
			c.stat.clear()
		}
	}
	g.prof.clear()
}

// LockStat is one row of /proc/lock_stat: a class's figures on one side.
// Times are in nanoseconds.
type LockStat struct {
	Class       string // the class name with #version and /subclass
	Read        bool   // the -R row; otherwise the write (or only) side
	ConBounces  int64
	Contentions int64
	WaitMin     int64
	WaitMax     int64
	WaitTotal   int64
	AcqBounces  int64
	// Acquisitions counts the releases of acquisitions stamped while
	// lock_stat was on (holdtime.nr, which lock_stat_show prints).
	Acquisitions int64
	HoldMin      int64
	HoldMax      int64
	HoldTotal    int64
	// ContentionPoints are where waiters were; ContendingPoints where the
	// holder they waited for took the lock (the class's, shared by both
	// sides, on the first row only).
	ContentionPoints, ContendingPoints []StatPoint
}

// StatPoint is a call site and the contentions counted there.
type StatPoint struct {
	PC    uintptr
	Count int64
}

type classStats struct {
	c    *class
	rows []LockStat
}

// LockStats returns v's lock statistics, classes with the most contentions
// first, as lock_stat_show sorts them; classes never acquired while
// lock_stat was on are left out.
func (v *Validator) LockStats() []LockStat {
	var out []LockStat
	for _, cs := range v.lockStats() {
		out = append(out, cs.rows...)
	}
	return out
}

func (v *Validator) lockStats() []classStats {
	if !compiledIn {
		return nil
	}
	g := v.graph()
	g.mu.Lock()
	cls := append([]*class(nil), g.classes...)
	g.mu.Unlock()
	var all []classStats
	var cons []int64
	for _, c := range cls {
		if c == nil {
			continue
		}
		s := &c.stat
		var rows []LockStat
		for sd := range 2 {
			h, w := &s.hold[sd], &s.wait[sd]
			if h.nr.Load() == 0 && w.nr.Load() == 0 {
				continue
			}
			rows = append(rows, LockStat{
				Class: c.displayName(), Read: sd == 1,
				ConBounces: s.bounces[bounceContendedWrite+sd].Load(), Contentions: w.nr.Load(),
				WaitMin: w.min.Load(), WaitMax: w.max.Load(), WaitTotal: w.total.Load(),
				AcqBounces: s.bounces[bounceAcquiredWrite+sd].Load(), Acquisitions: h.nr.Load(),
				HoldMin: h.min.Load(), HoldMax: h.max.Load(), HoldTotal: h.total.Load(),
			})
		}
		s.mu.Lock()
		cp, dp := points(&s.contention), points(&s.contending)
		s.mu.Unlock()
		if len(rows) == 0 {
			if len(cp) == 0 {
				continue
			}
			// Waiting now, nothing released yet: the points are the news.
			rows = append(rows, LockStat{Class: c.displayName()})
		}
		rows[0].ContentionPoints, rows[0].ContendingPoints = cp, dp
		n := int64(0)
		for _, r := range rows {
			n += r.Contentions
		}
		all = append(all, classStats{c, rows})
		cons = append(cons, n)
	}
	idx := make([]int, len(all))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return cons[idx[a]] > cons[idx[b]] })
	sorted := make([]classStats, len(all))
	for i, j := range idx {
		sorted[i] = all[j]
	}
	return sorted
}

func points(pts *[lockstatPoints]statPoint) []StatPoint {
	var out []StatPoint
	for _, p := range pts {
		if p.ip == 0 {
			break
		}
		out = append(out, StatPoint{p.ip, p.n})
	}
	return out
}

// statTime is snprint_time: microseconds with two decimals, rounded.
func statTime(ns int64) string {
	ns += 5
	return fmt.Sprintf("%d.%02d", ns/1000, ns%1000/10)
}

func statLine(b *strings.Builder, ch byte, offset, length int) {
	b.WriteString(strings.Repeat(" ", max(offset, 0)))
	b.WriteString(strings.Repeat(string(ch), max(length, 0)))
	b.WriteByte('\n')
}

// statName is the name seq_stats prints, in its char name[39]: the class
// name cut to leave room for "#version" and "/subclass", each of which
// keeps a single digit (snprintf into 3 bytes).
func statName(c *class) string {
	n := 38
	if c.version > 1 {
		n -= 2
	}
	if c.sub > 0 {
		n -= 2
	}
	name := c.name
	if len(name) > n-1 {
		name = name[:n-1]
	}
	if c.version > 1 {
		name += "#" + strconv.Itoa(c.version)[:1]
	}
	if c.sub > 0 {
		name += "/" + strconv.Itoa(int(c.sub))[:1]
	}
	return name
}

// WriteLockStat writes v's statistics in /proc/lock_stat's layout
// (lock_stat version 0.4, lock_stat_show and seq_stats): classes sorted by
// contentions; a row for each side with a released hold (holdtime.nr), so a
// wait whose lock is still held shows in the points but in no row yet; each
// contended class followed by its contention points and contending points
// ("<count> [<addr>] <symbol>"), and a dotted line after the contending
// points if there are any. Built with -tags krules_nolockdep it writes
// nothing and returns an error satisfying errors.Is(err, fs.ErrNotExist).
func (v *Validator) WriteLockStat(w io.Writer) error {
	if !compiledIn {
		return noProcFile("lock_stat")
	}
	var b strings.Builder
	const width = 40 + 1 + 12*(14+1)
	b.WriteString("lock_stat version 0.4\n")
	if !v.graph().enabled.Load() {
		b.WriteString("*WARNING* lock debugging disabled!! - possibly due to a lockdep warning\n")
	}
	statLine(&b, '-', 0, width)
	fmt.Fprintf(&b, "%40s %14s %14s %14s %14s %14s %14s %14s %14s %14s %14s %14s %14s\n",
		"class name", "con-bounces", "contentions", "waittime-min", "waittime-max",
		"waittime-total", "waittime-avg", "acq-bounces", "acquisitions", "holdtime-min",
		"holdtime-max", "holdtime-total", "holdtime-avg")
	statLine(&b, '-', 0, width)
	b.WriteString("\n")
	timeCols := func(nr, lo, hi, total int64) {
		avg := int64(0)
		if nr != 0 {
			avg = total / nr
		}
		fmt.Fprintf(&b, "%14d %14s %14s %14s %14s", nr, statTime(lo), statTime(hi), statTime(total), statTime(avg))
	}
	for _, cs := range v.lockStats() {
		name := statName(cs.c)
		var rows []LockStat
		var cons int64
		readHeld := false
		for _, r := range cs.rows {
			cons += r.Contentions
			if r.Acquisitions != 0 {
				rows = append(rows, r)
				readHeld = readHeld || r.Read
			}
		}
		for _, r := range rows {
			switch {
			case r.Read:
				fmt.Fprintf(&b, "%38s-R:", name)
			case len(rows) == 2:
				fmt.Fprintf(&b, "%38s-W:", name)
			default:
				fmt.Fprintf(&b, "%40s:", name)
			}
			fmt.Fprintf(&b, "%14d ", r.ConBounces)
			timeCols(r.Contentions, r.WaitMin, r.WaitMax, r.WaitTotal)
			fmt.Fprintf(&b, " %14d ", r.AcqBounces)
			timeCols(r.Acquisitions, r.HoldMin, r.HoldMax, r.HoldTotal)
			b.WriteString("\n")
		}
		if cons == 0 {
			continue
		}
		namelen := len(name)
		if readHeld {
			namelen += 2
		}
		contending := cs.rows[0].ContendingPoints
		for _, pts := range [][]StatPoint{cs.rows[0].ContentionPoints, contending} {
			for i, p := range pts {
				if i == 0 {
					statLine(&b, '-', 40-namelen, namelen)
				}
				fmt.Fprintf(&b, "%40s %14d %29s %s\n", name, p.Count, fmt.Sprintf("[<%016x>]", p.PC), stack.FormatPC(p.PC))
			}
		}
		if len(contending) > 0 {
			b.WriteString("\n")
			statLine(&b, '.', 0, width)
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
