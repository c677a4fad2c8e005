//go:build !krules_nolockdep

package lockclass_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// The lib/locking-selftest.c matrix (locking_selftest()): every scenario runs on
// a fresh validator, and asserts report or no report, the report's kind,
// and that nothing was reported before the last step.

// lk is one lock of a selftest column, driven by the column's LOCK/UNLOCK.
type lk interface {
	lock()
	unlock()
	init()
}

type column struct {
	name string
	mk   func(opts []lockclass.Option) lk
}

type spinCol struct {
	l    lockclass.SpinLock
	opts []lockclass.Option
}

func (c *spinCol) lock()   { c.l.Lock() }
func (c *spinCol) unlock() { c.l.Unlock() }
func (c *spinCol) init()   { c.l.Init(c.opts...) }

type wlockCol struct {
	l    lockclass.RWLock
	opts []lockclass.Option
}

func (c *wlockCol) lock()   { c.l.Lock() }
func (c *wlockCol) unlock() { c.l.Unlock() }
func (c *wlockCol) init()   { c.l.Init(c.opts...) }

type rlockCol struct{ wlockCol }

func (c *rlockCol) lock()   { c.l.RLock() }
func (c *rlockCol) unlock() { c.l.RUnlock() }

type mutexCol struct {
	l    lockclass.Mutex
	opts []lockclass.Option
}

func (c *mutexCol) lock()   { c.l.Lock() }
func (c *mutexCol) unlock() { c.l.Unlock() }
func (c *mutexCol) init()   { c.l.Init(c.opts...) }

type wsemCol struct {
	l    lockclass.RWSem
	opts []lockclass.Option
}

func (c *wsemCol) lock()   { c.l.Lock() }
func (c *wsemCol) unlock() { c.l.Unlock() }
func (c *wsemCol) init()   { c.l.Init(c.opts...) }

type rsemCol struct{ wsemCol }

func (c *rsemCol) lock()   { c.l.RLock() }
func (c *rsemCol) unlock() { c.l.RUnlock() }

var columns = []column{
	{"spin", func(o []lockclass.Option) lk { c := &spinCol{opts: o}; c.init(); return c }},
	{"wlock", func(o []lockclass.Option) lk { c := &wlockCol{opts: o}; c.init(); return c }},
	{"rlock", func(o []lockclass.Option) lk { c := &rlockCol{wlockCol{opts: o}}; c.init(); return c }},
	{"mutex", func(o []lockclass.Option) lk { c := &mutexCol{opts: o}; c.init(); return c }},
	{"wsem", func(o []lockclass.Option) lk { c := &wsemCol{opts: o}; c.init(); return c }},
	{"rsem", func(o []lockclass.Option) lk { c := &rsemCol{wsemCol{opts: o}}; c.init(); return c }},
}

// Class keys: A–D one class each, X1/X2 share X, Y1/Y2 share Y, Z1/Z2 Z.
var keys = map[byte]*lockclass.Key{}

func init() {
	for _, k := range "ABCDXYZ" {
		keys[byte(k)] = registeredKey()
	}
}

// world hands out the locks of one scenario, all on validator v.
type world struct {
	v     *lockclass.Validator
	locks map[string]lk
}

func newWorld() *world { return &world{v: lockclass.NewValidator(), locks: map[string]lk{}} }

func (w *world) opts(name string) []lockclass.Option {
	return []lockclass.Option{lockclass.WithValidator(w.v), lockclass.WithKey(keys[name[0]]), lockclass.WithName(name[:1])}
}

func (w *world) get(col column, name string) lk {
	if l := w.locks[name]; l != nil {
		return l
	}
	l := col.mk(w.opts(name))
	w.locks[name] = l
	return l
}

// scenario runs steps; each step is one event, and only the last may report.
type scenario struct {
	name  string
	steps []func(w *world, col column)
	kind  krules.Kind // what a failure reports
}

func lu2(a, b string) func(w *world, col column) {
	return func(w *world, col column) {
		x, y := w.get(col, a), w.get(col, b)
		x.lock()
		y.lock()
		y.unlock()
		x.unlock()
	}
}

func (s scenario) run(t *testing.T, col column) (reported bool) {
	rec := krulestest.Record(t)
	w := newWorld()
	for i, step := range s.steps {
		step(w, col)
		if i < len(s.steps)-1 {
			require.Zero(t, rec.Len(), "reported before the last step")
		}
	}
	if rec.Len() == 0 {
		return false
	}
	require.Len(t, rec.Kinds(), 1)
	require.Equal(t, s.kind, rec.Kinds()[0])
	require.False(t, w.v.Enabled(), "a report turns validation off")
	return true
}

var basicFamilies = []scenario{
	{"AA", []func(*world, column){func(w *world, col column) {
		x1, x2 := w.get(col, "X1"), w.get(col, "X2")
		x1.lock()
		x2.lock()
		x2.unlock()
		x1.unlock()
	}}, krules.RecursiveLocking},
	{"ABBA", []func(*world, column){lu2("A", "B"), lu2("B", "A")}, krules.CircularDependency},
	{"ABBCCA", []func(*world, column){lu2("A", "B"), lu2("B", "C"), lu2("C", "A")}, krules.CircularDependency},
	{"ABCABC", []func(*world, column){lu2("A", "B"), lu2("C", "A"), lu2("B", "C")}, krules.CircularDependency},
	{"ABBCCDDA", []func(*world, column){lu2("A", "B"), lu2("B", "C"), lu2("C", "D"), lu2("D", "A")}, krules.CircularDependency},
	{"ABCDBDDA", []func(*world, column){lu2("A", "B"), lu2("C", "D"), lu2("B", "D"), lu2("D", "A")}, krules.CircularDependency},
	{"ABCDBCDA", []func(*world, column){lu2("A", "B"), lu2("C", "D"), lu2("B", "C"), lu2("D", "A")}, krules.CircularDependency},
}

// lib/locking-selftest.c's basic families (AA, ABBA, ABBCCA, ...):
// spin F, wlock F, rlock S, mutex F, wsem F, rsem F.
func TestSelftestBasicFamilies(t *testing.T) {
	expect := map[string]bool{"spin": true, "wlock": true, "rlock": false, "mutex": true, "wsem": true, "rsem": true}
	bothIDWays(t, func(t *testing.T) {
		for _, s := range basicFamilies {
			for _, col := range columns {
				t.Run(s.name+"/"+col.name, func(t *testing.T) {
					require.Equal(t, expect[col.name], s.run(t, col))
				})
			}
		}
	})
}

// lib/locking-selftest.c's double unlock and initialize held: fail in every
// column.
func TestSelftestAllFail(t *testing.T) {
	families := []scenario{
		{"double-unlock", []func(*world, column){func(w *world, col column) {
			a := w.get(col, "A")
			a.lock()
			a.unlock()
			a.unlock()
		}}, krules.BadUnlockBalance},
		{"init-held", []func(*world, column){func(w *world, col column) {
			a := w.get(col, "A")
			a.lock()
			a.init()
			a.unlock()
		}}, krules.HeldLockFreed},
		{"unlock-order (older kernels)", []func(*world, column){func(w *world, col column) {
			a, b := w.get(col, "A"), w.get(col, "B")
			a.lock()
			b.lock()
			a.unlock()
			b.unlock()
		}}, 0},
	}
	for _, s := range families {
		for _, col := range columns {
			t.Run(s.name+"/"+col.name, func(t *testing.T) {
				require.Equal(t, s.kind != 0, s.run(t, col))
			})
		}
	}
}

// rw is a lock with both sides, for the read-recursion matrix.
type rw interface {
	lock()
	unlock()
	rlock()
	runlock()
}

type rwlockRW struct{ l lockclass.RWLock }

func (r *rwlockRW) lock()    { r.l.Lock() }
func (r *rwlockRW) unlock()  { r.l.Unlock() }
func (r *rwlockRW) rlock()   { r.l.RLock() }
func (r *rwlockRW) runlock() { r.l.RUnlock() }

type rwsemRW struct{ l lockclass.RWSem }

func (r *rwsemRW) lock()    { r.l.Lock() }
func (r *rwsemRW) unlock()  { r.l.Unlock() }
func (r *rwsemRW) rlock()   { r.l.RLock() }
func (r *rwsemRW) runlock() { r.l.RUnlock() }

// rwWorld builds the read-recursion locks: X*, Z* are rw locks of the
// family, Y* a spinlock (rwlock family) or a mutex (rwsem family).
type rwWorld struct {
	v   *lockclass.Validator
	sem bool
	rws map[string]rw
	ys  map[string]lk
}

func (w *rwWorld) rw(name string) rw {
	if l := w.rws[name]; l != nil {
		return l
	}
	opts := []lockclass.Option{lockclass.WithValidator(w.v), lockclass.WithKey(keys[name[0]]), lockclass.WithName(name[:1])}
	var l rw
	if w.sem {
		s := &rwsemRW{}
		s.l.Init(opts...)
		l = s
	} else {
		s := &rwlockRW{}
		s.l.Init(opts...)
		l = s
	}
	w.rws[name] = l
	return l
}

func (w *rwWorld) y(name string) lk {
	if l := w.ys[name]; l != nil {
		return l
	}
	opts := []lockclass.Option{lockclass.WithValidator(w.v), lockclass.WithKey(keys['Y']), lockclass.WithName("Y")}
	var l lk
	if w.sem {
		l = columns[3].mk(opts)
	} else {
		l = columns[0].mk(opts)
	}
	w.ys[name] = l
	return l
}

type rwStep func(w *rwWorld)

func runRW(t *testing.T, sem bool, steps []rwStep) []krules.Kind {
	rec := krulestest.Record(t)
	w := &rwWorld{v: lockclass.NewValidator(), sem: sem, rws: map[string]rw{}, ys: map[string]lk{}}
	for i, s := range steps {
		s(w)
		if i < len(steps)-1 {
			require.Zero(t, rec.Len(), "reported before the last step")
		}
	}
	return rec.Kinds()
}

// lib/locking-selftest.c's read-recursion matrix (rlock_AA1 and the rest):
// rwlock readers are R, rwsem readers r.
func TestSelftestReadRecursion(t *testing.T) {
	rr := func(a, b string) rwStep { // read a, then read b
		return func(w *rwWorld) { x, y := w.rw(a), w.rw(b); x.rlock(); y.rlock(); y.runlock(); x.runlock() }
	}
	rwr := func(a, b string) rwStep {
		return func(w *rwWorld) { x, y := w.rw(a), w.rw(b); x.rlock(); y.lock(); y.unlock(); x.runlock() }
	}
	wr := func(a, b string) rwStep {
		return func(w *rwWorld) { x, y := w.rw(a), w.rw(b); x.lock(); y.rlock(); y.runlock(); x.unlock() }
	}
	ww := func(a, b string) rwStep {
		return func(w *rwWorld) { x, y := w.rw(a), w.rw(b); x.lock(); y.lock(); y.unlock(); x.unlock() }
	}
	readThenY := func(w *rwWorld) { x, y := w.rw("X1"), w.y("Y1"); x.rlock(); y.lock(); y.unlock(); x.runlock() }
	writeThenY := func(w *rwWorld) { x, y := w.rw("X1"), w.y("Y1"); x.lock(); y.lock(); y.unlock(); x.unlock() }
	yThenRead := func(w *rwWorld) { x, y := w.rw("X1"), w.y("Y1"); y.lock(); x.rlock(); x.runlock(); y.unlock() }
	yThenWrite := func(w *rwWorld) { x, y := w.rw("X1"), w.y("Y1"); y.lock(); x.lock(); x.unlock(); y.unlock() }

	rows := []struct {
		name             string
		steps            []rwStep
		rwlock, rwsem    bool // expect a report
		rwlockKind, kind krules.Kind
	}{
		{"recursive read-lock", []rwStep{rr("X1", "X1")}, false, true, 0, krules.RecursiveLocking},
		{"recursive read-lock #2", []rwStep{rr("X1", "X2")}, false, true, 0, krules.RecursiveLocking},
		{"mixed read-write-lock", []rwStep{rwr("X1", "X2")}, true, true, krules.RecursiveLocking, krules.RecursiveLocking},
		{"mixed write-read-lock", []rwStep{wr("X1", "X2")}, true, true, krules.RecursiveLocking, krules.RecursiveLocking},
		{"mixed read-lock/lock-write ABBA", []rwStep{readThenY, yThenWrite}, true, true, krules.CircularDependency, krules.CircularDependency},
		{"mixed read-lock/lock-read ABBA", []rwStep{readThenY, yThenRead}, false, true, 0, krules.CircularDependency},
		{"mixed write-lock/lock-write ABBA", []rwStep{writeThenY, yThenWrite}, true, true, krules.CircularDependency, krules.CircularDependency},
		{"chain cached mixed R-L/L-W ABBA", []rwStep{readThenY, yThenRead, yThenWrite}, true, false, krules.CircularDependency, 0},
		{"write-write same class", []rwStep{ww("X1", "X2")}, true, true, krules.RecursiveLocking, krules.RecursiveLocking},
	}
	for _, r := range rows {
		t.Run("rwlock/"+r.name, func(t *testing.T) {
			kinds := runRW(t, false, r.steps)
			if r.rwlock {
				require.Equal(t, []krules.Kind{r.rwlockKind}, kinds)
			} else {
				require.Empty(t, kinds)
			}
		})
		if r.name == "chain cached mixed R-L/L-W ABBA" {
			continue // rwlock only
		}
		t.Run("rwsem/"+r.name, func(t *testing.T) {
			kinds := runRW(t, true, r.steps)
			if r.rwsem {
				require.Equal(t, []krules.Kind{r.kind}, kinds)
			} else {
				require.Empty(t, kinds)
			}
		})
	}
}

// lib/locking-selftest.c's three-event rwlock families (W1R2_W2R3_W3R1 and
// the rest) in all six orders: the outcome must not depend on the order.
func TestSelftestThreeEventFamilies(t *testing.T) {
	ev := func(first string, firstWrite bool, second string, secondWrite bool) rwStep {
		return func(w *rwWorld) {
			x, y := w.rw(first), w.rw(second)
			if firstWrite {
				x.lock()
			} else {
				x.rlock()
			}
			if secondWrite {
				y.lock()
				y.unlock()
			} else {
				y.rlock()
				y.runlock()
			}
			if firstWrite {
				x.unlock()
			} else {
				x.runlock()
			}
		}
	}
	families := []struct {
		name   string
		events [3]rwStep
		fail   bool
	}{
		{"W1R2/W2R3/W3R1", [3]rwStep{ev("X1", true, "Y1", false), ev("Y1", true, "Z1", false), ev("Z1", true, "X1", false)}, true},
		{"W1W2/R2R3/W3R1", [3]rwStep{ev("X1", true, "Y1", true), ev("Y1", false, "Z1", false), ev("Z1", true, "X1", false)}, true},
		{"W1W2/R2R3/R3W1", [3]rwStep{ev("X1", true, "Y1", false), ev("Y1", false, "Z1", false), ev("Z1", true, "X1", true)}, false},
		{"W1R2/R2R3/W3W1", [3]rwStep{ev("X1", true, "Y1", true), ev("Y1", false, "Z1", false), ev("Z1", false, "X1", true)}, false},
	}
	orders := [][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	for _, f := range families {
		for _, o := range orders {
			t.Run(fmt.Sprintf("%s/%d%d%d", f.name, o[0]+1, o[1]+1, o[2]+1), func(t *testing.T) {
				kinds := runRW(t, false, []rwStep{f.events[o[0]], f.events[o[1]], f.events[o[2]]})
				if f.fail {
					require.Equal(t, []krules.Kind{krules.CircularDependency}, kinds)
				} else {
					require.Empty(t, kinds)
				}
			})
		}
	}
}
