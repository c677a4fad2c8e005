//go:build !krules_nolockdep

package lockclass_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// FuzzValidatorAgainstModel drives random acquisition scripts, run by
// several goroutines in lock step, through a validator, and compares the
// step and kind of the first report with a small reference model: chain
// cache, AA matrix, nearest-predecessor edges, out-of-order release, and a
// brute-force search for a strong cycle over (class, dependency type)
// states, written from the definition (no edge -(xR)-> may be followed by
// an edge -(Sx)->) rather than from the validator's BFS.
//
// Every goroutine has its own instances (two per class, per kind), so the
// real locks never block; the classes are shared through keys.
func FuzzValidatorAgainstModel(f *testing.F) {
	for _, seed := range [][]byte{
		{0x00, 0x00, 0x00, 0x01, 0x0c, 0x00, 0x0c, 0x00, 0x00, 0x01, 0x00, 0x00, 0x0c, 0x00, 0x0c, 0x00},
		{0x08, 0x00, 0x00, 0x01, 0x0c, 0x00, 0x0c, 0x00, 0x00, 0x01, 0x08, 0x00, 0x0c, 0x00, 0x0c, 0x00},
		{0x01, 0x00, 0x05, 0x01, 0x09, 0x02, 0x0d, 0x00, 0x0d, 0x00, 0x0d, 0x00, 0x02, 0x01, 0x02, 0x00},
		// ABBA on the Mutexes, the second time round from their cached path
		{0x00, 0x04, 0x00, 0x05, 0x0c, 0x00, 0x0c, 0x00, 0x00, 0x04, 0x00, 0x05, 0x0c, 0x00, 0x0c, 0x00, 0x01, 0x05, 0x01, 0x04},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 128 {
			data = data[:128]
		}
		ops := decodeOps(data)
		want, wantKind := modelRun(ops)
		got, gotKind := validatorRun(t, ops)
		require.Equal(t, want, got, "first report step (-1: none); ops %v", ops)
		require.Equal(t, wantKind, gotKind, "ops %v", ops)
	})
}

const (
	fzGoroutines = 3
	fzClasses    = 4
	fzMaxDepth   = 8
)

type fzOp struct {
	g      int
	unlock bool
	read   uint8 // 0 W, 1 r, 2 R
	class  int
	inst   int
	try    bool
	pick   int
}

func (o fzOp) String() string {
	if o.unlock {
		return fmt.Sprintf("g%d:U#%d", o.g, o.pick)
	}
	t := ""
	if o.try {
		t = "try"
	}
	return fmt.Sprintf("g%d:%s%s%c%d", o.g, t, []string{"W", "r", "R"}[o.read], 'A'+o.class, o.inst)
}

func decodeOps(data []byte) []fzOp {
	var ops []fzOp
	for i := 0; i+1 < len(data); i += 2 {
		b0, b1 := data[i], data[i+1]
		op := fzOp{g: int(b0 % fzGoroutines), class: int(b1 % fzClasses), inst: int(b1>>2) & 1, try: b1&0x10 != 0, pick: int(b1)}
		switch (b0 >> 2) % 4 {
		case 0, 1:
			op.read = uint8((b0 >> 2) % 4) // W or r
		case 2:
			op.read = 2
		case 3:
			op.unlock = true
		}
		ops = append(ops, op)
	}
	return ops
}

// instID names an instance: goroutine, class, instance and kind. Recursive
// reads (R) take a Map; writes to instance 1 a Mutex, so that its
// lock-first fast path meets the model too; everything else an RWSem.
type instID struct {
	g, class, inst int
	kind           instKind
}

type instKind uint8

const (
	kindRWSem instKind = iota
	kindMap
	kindMutex
)

func instOf(o fzOp) instID {
	kind := kindRWSem
	switch {
	case o.read == 2:
		kind = kindMap
	case o.read == 0 && o.inst == 1:
		kind = kindMutex
	}
	return instID{o.g, o.class, o.inst, kind}
}

// ---- the reference model ----

type mHeld struct {
	id    instID
	class int
	read  uint8
	try   bool
}

type model struct {
	held   [fzGoroutines][]mHeld
	chains map[string]bool
	deps   map[[2]int]uint8 // dependency type bits, as the kernel's DEP_*
}

func depType(prevRead, nextRead uint8) uint8 {
	bit := 0
	if prevRead == 0 {
		bit++ // E
	}
	if nextRead != 2 {
		bit += 2 // N
	}
	return 1 << bit
}

// Type bits: SR=1, ER=2, SN=4, EN=8.
func endsR(t uint8) bool   { return t == 1 || t == 2 }
func startsS(t uint8) bool { return t == 1 || t == 4 }

// strongCycle reports whether the new dependency prev -> next (of type tn)
// closes a strong cycle: a walk next -> ... -> prev in the graph where,
// at every lock on it (next and prev included, with the new edge), the
// type arriving and the type leaving are not "ends in R" then "starts S".
func (m *model) strongCycle(prev, next int, tn uint8) bool {
	type state struct {
		node int
		in   uint8
	}
	seen := map[state]bool{}
	var walk func(s state) bool
	walk = func(s state) bool {
		if seen[s] {
			return false
		}
		seen[s] = true
		if s.node == prev && !(endsR(s.in) && startsS(tn)) {
			return true
		}
		for to := 0; to < fzClasses; to++ {
			deps := m.deps[[2]int{s.node, to}]
			for _, t := range []uint8{1, 2, 4, 8} {
				if deps&t != 0 && !(endsR(s.in) && startsS(t)) && walk(state{to, t}) {
					return true
				}
			}
		}
		return false
	}
	return walk(state{next, tn})
}

func chainKey(held []mHeld, class int, read uint8) string {
	k := ""
	for _, h := range held {
		k += fmt.Sprintf("%d.%d,", h.class, h.read)
	}
	return k + fmt.Sprintf("%d.%d", class, read)
}

// acquire returns the kind reported, or 0.
func (m *model) acquire(g int, h mHeld) krules.Kind {
	held := m.held[g]
	if !h.try {
		key := chainKey(held, h.class, h.read)
		if !m.chains[key] {
			m.chains[key] = true
			for _, p := range held {
				if p.class == h.class && !(h.read == 2 && p.read != 0) {
					return krules.RecursiveLocking
				}
			}
			for i := len(held) - 1; i >= 0; i-- {
				p := held[i]
				tn := depType(p.read, h.read)
				if m.strongCycle(p.class, h.class, tn) {
					if p.class == h.class {
						return krules.RecursiveLocking
					}
					return krules.CircularDependency
				}
				m.deps[[2]int{p.class, h.class}] |= tn
				if !p.try {
					break
				}
			}
		}
	}
	m.held[g] = append(held, h)
	return 0
}

func (m *model) release(g, idx int) krules.Kind {
	held := m.held[g]
	above := slices.Clone(held[idx+1:])
	m.held[g] = held[:idx]
	for _, h := range above {
		if k := m.acquire(g, h); k != 0 {
			return k
		}
	}
	return 0
}

// applicable tells whether op can run: lock ops skip instances already
// held and respect the depth cap; unlocks need something held.
func applicable(held []mHeld, o fzOp) bool {
	if o.unlock {
		return len(held) > 0
	}
	if len(held) >= fzMaxDepth {
		return false
	}
	for _, h := range held {
		if h.id == instOf(o) {
			return false
		}
	}
	return true
}

func modelRun(ops []fzOp) (int, krules.Kind) {
	m := &model{chains: map[string]bool{}, deps: map[[2]int]uint8{}}
	for i, o := range ops {
		if !applicable(m.held[o.g], o) {
			continue
		}
		var k krules.Kind
		if o.unlock {
			k = m.release(o.g, o.pick%len(m.held[o.g]))
		} else {
			k = m.acquire(o.g, mHeld{id: instOf(o), class: o.class, read: o.read, try: o.try})
		}
		if k != 0 {
			return i, k
		}
	}
	return -1, 0
}

// ---- the validator ----

var fzKeys [fzClasses]lockclass.Key

type fzWorker struct {
	sems [fzClasses][2]lockclass.RWSem
	mus  [fzClasses]lockclass.Mutex // instance 1's writes
	maps [fzClasses][2]*lockclass.Map
	held []mHeld
	ops  chan fzOp
	done chan struct{}
}

func (w *fzWorker) do(o fzOp) {
	if o.unlock {
		idx := o.pick % len(w.held)
		h := w.held[idx]
		w.held = slices.Delete(w.held, idx, idx+1)
		switch {
		case h.id.kind == kindMap:
			w.maps[h.class][h.id.inst].Release()
		case h.id.kind == kindMutex:
			w.mus[h.class].Unlock()
		case h.read == 1:
			w.sems[h.class][h.id.inst].RUnlock()
		default:
			w.sems[h.class][h.id.inst].Unlock()
		}
		return
	}
	s := &w.sems[o.class][o.inst]
	switch {
	case instOf(o).kind == kindMutex && o.try:
		if !w.mus[o.class].TryLock() {
			panic("uncontended TryLock failed")
		}
	case instOf(o).kind == kindMutex:
		w.mus[o.class].Lock()
	case o.read == 2 && o.try:
		w.maps[o.class][o.inst].TryAcquireRead()
	case o.read == 2:
		w.maps[o.class][o.inst].AcquireRead()
	case o.read == 1 && o.try:
		if !s.TryRLock() {
			panic("uncontended TryRLock failed")
		}
	case o.read == 1:
		s.RLock()
	case o.try:
		if !s.TryLock() {
			panic("uncontended TryLock failed")
		}
	default:
		s.Lock()
	}
	w.held = append(w.held, mHeld{id: instOf(o), class: o.class, read: o.read, try: o.try})
}

func validatorRun(t *testing.T, ops []fzOp) (int, krules.Kind) {
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	var workers [fzGoroutines]*fzWorker
	for g := range workers {
		w := &fzWorker{ops: make(chan fzOp), done: make(chan struct{})}
		for c := range fzClasses {
			name := string(rune('A' + c))
			w.mus[c].Init(lockclass.WithValidator(v), lockclass.WithKey(&fzKeys[c]), lockclass.WithName(name))
			for k := range 2 {
				w.sems[c][k].Init(lockclass.WithValidator(v), lockclass.WithKey(&fzKeys[c]), lockclass.WithName(name))
				w.maps[c][k] = lockclass.NewMap(name, lockclass.WithValidator(v), lockclass.WithKey(&fzKeys[c]))
			}
		}
		workers[g] = w
		go func() {
			for o := range w.ops {
				w.do(o)
				w.done <- struct{}{}
			}
			for len(w.held) > 0 { // leave nothing behind
				w.do(fzOp{unlock: true, pick: len(w.held) - 1})
			}
			close(w.done)
		}()
	}
	first, kind := -1, krules.Kind(0)
	for i, o := range ops {
		w := workers[o.g]
		if !applicable(w.held, o) {
			continue
		}
		w.ops <- o
		<-w.done
		if rec.Len() > 0 {
			first, kind = i, rec.Kinds()[0]
			break
		}
	}
	for _, w := range workers {
		close(w.ops)
		<-w.done
	}
	return first, kind
}
