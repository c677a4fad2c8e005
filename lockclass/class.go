package lockclass

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"unsafe"

	"github.com/krules/krules"
)

// class is a lock class (struct lock_class): the unit of validation, one per
// (key, subclass) in a validator's graph.
type class struct {
	g       *graph
	key     *Key
	sub     uint8
	name    string
	version int
	idx     int
	inner   uint8
	outer   uint8
	wait    waitCtx
	// modes are the class's chain-key material, one per read mode (write,
	// read, recursive read).
	modes [3]chainMode

	// state is zero while the class validates normally; any bit sends its
	// acquisitions down the slow path.
	state atomic.Uint32
	usage atomic.Uint32

	stat classStat // lock_stat's figures (lockstat.go)

	// Under g.mu.
	after, before []*edge
	genStrong     uint64
	genAny        uint64
}

// chainMode is what chain keys need of a class in one read mode.
type chainMode struct {
	// id is the class's contribution to chain keys (the kernel's
	// class_idx | read << 13): a random 64-bit value, so chain keys of
	// different validators never meet.
	id uint64
	// headKey is the key of the one-lock chain, chainKeyMix(0, id).
	headKey uint64
	// head says that the one-lock chain is cached: the chain-head fast
	// path needs no hash probe.
	head atomic.Bool
}

const (
	stStale      = 1 << iota // its graph was reset or its key zapped
	stOff                    // its graph stopped validating
	stNoValidate             // check == 0
	stNoTrack                // ignored entirely
)

// Usage bits. Goroutines have no interrupts, so every acquisition happens in
// "process context with irqs enabled": a write acquisition sets the kernel's
// ENABLED_HARDIRQ and ENABLED_SOFTIRQ, a read one their _READ variants, and
// the usage characters come out as the kernel prints a mutex ({+.+.}).
const (
	usedBit = 1 << iota
	enabledW
	enabledR
)

// Wait types (enum lockdep_wait_type in include/linux/lockdep_types.h),
// printed as {outer:inner}. LD_WAIT_CONFIG is LD_WAIT_SPIN unless
// CONFIG_PROVE_RAW_LOCK_NESTING is set, which v6.12 leaves off by default
// (lib/Kconfig.debug; it became default y in v6.13): so spinlock_t and
// rwlock_t print {2:2}, as raw_spinlock_t does, and mutex and rwsem {3:3} (LD_WAIT_SLEEP follows CONFIG).
const (
	waitSpin   = 2        // LD_WAIT_SPIN: raw_spinlock_t
	waitConfig = waitSpin // LD_WAIT_CONFIG: spinlock_t, rwlock_t
	waitSleep  = 3        // LD_WAIT_SLEEP: mutex, rwsem (4 with PROVE_RAW_LOCK_NESTING)
)

var idSeed atomic.Uint64

func nextID() uint64 {
	// splitmix64
	z := idSeed.Add(0x9e3779b97f4a7c15)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// classLabel is the held-lock entries' Label: what reports print for a
// class.
func classLabel(p unsafe.Pointer) string { return (*class)(p).label() }

// displayName is the kernel's __print_lock_name: name, "#ver" for the second
// and later classes sharing a name, "/sub" for subclasses.
func (c *class) displayName() string {
	s := c.name
	if c.version > 1 {
		s += "#" + strconv.Itoa(c.version)
	}
	if c.sub > 0 {
		s += "/" + strconv.Itoa(int(c.sub))
	}
	return s
}

// usageChars is get_usage_chars: hardirq write/read, softirq write/read.
func (c *class) usageChars() string {
	u := c.usage.Load()
	w, r := byte('.'), byte('.')
	if u&enabledW != 0 {
		w = '+'
	}
	if u&enabledR != 0 {
		r = '+'
	}
	return string([]byte{w, r, w, r})
}

// label is print_lock_name: "(name){usage}-{outer:inner}".
func (c *class) label() string {
	outer := c.outer
	if outer == 0 {
		outer = c.inner
	}
	return fmt.Sprintf("(%s){%s}-{%d:%d}", c.displayName(), c.usageChars(), outer, c.inner)
}

func (c *class) markUsage(read uint8, check, sync bool) {
	want := uint32(usedBit)
	if check && !sync {
		if read != 0 {
			want |= enabledR
		} else {
			want |= enabledW
		}
	}
	if c.usage.Load()&want != want {
		c.usage.Or(want)
	}
}

// lookup finds the class of (key, sub) without locking.
func (g *graph) lookup(key *Key, sub int) *class {
	if c, ok := g.byKey.Load(classKey{key, uint8(sub)}); ok {
		return c.(*class)
	}
	return nil
}

// register returns the class of (key, sub), registering it if needed
// (register_lock_class). It returns a report, not yet emitted, when the
// class table is full or the name disagrees with the key's class.
func (g *graph) register(cfg *mapConfig, key *Key, sub int) (*class, *krules.Report) {
	name := cfg.name
	if name == "" {
		name = key.name
	}
	if c := g.lookup(key, sub); c != nil {
		return c, g.checkName(c, key, name)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.lookup(key, sub); c != nil {
		return c, nil
	}
	if !g.enabled.Load() {
		return nil, nil
	}
	if !keyKnown(key) {
		// lockdep_init_map_type: "BUG: key %px has not been registered!"
		// and DEBUG_LOCKS_WARN_ON(1); the lock is not validated.
		if !g.reportable(true) {
			return nil, nil
		}
		return nil, unregisteredKeyReport(key)
	}
	if g.nclasses >= g.v.lim.Classes {
		if !g.offLocked() {
			return nil, nil
		}
		return nil, limitReport("BUG: MAX_LOCKDEP_KEYS too low!")
	}
	c := &class{g: g, key: key, sub: uint8(sub), name: name, inner: cfg.inner, outer: cfg.outer, wait: cfg.waitCtx()}
	for r := range c.modes {
		id := nextID()
		c.modes[r].id, c.modes[r].headKey = id, chainKeyMix(0, id)
	}
	switch key {
	case &noValidateKey:
		c.state.Store(stNoValidate)
	case &noTrackKey:
		c.state.Store(stNoTrack)
	}
	// name_version (count_matching_names): a subclass takes the version
	// of its key's subclass-0 class, if that is registered; any other
	// class one more than the highest version among the live classes of
	// its name, so a zapped class's version is given again.
	top := 0
	for _, o := range g.classes {
		if o == nil {
			continue
		}
		if sub != 0 && o.key == key && o.sub == 0 {
			c.version = o.version
			break
		}
		if o.name == name {
			top = max(top, o.version)
		}
	}
	if c.version == 0 {
		c.version = top + 1
	}
	// Take a free index, or a new one.
	c.idx = len(g.classes)
	for i := 1; i < len(g.classes); i++ {
		if g.classes[i] == nil {
			c.idx = i
			break
		}
	}
	if c.idx == len(g.classes) {
		g.classes = append(g.classes, c)
	} else {
		g.classes[c.idx] = c
	}
	g.maxIndex = max(g.maxIndex, c.idx)
	g.nclasses++
	g.byKey.Store(classKey{key, uint8(sub)}, c)
	return c, nil
}

// checkName is the WARN_ONCE of look_up_lock_class: a key's class found
// under a different name.
func (g *graph) checkName(c *class, key *Key, name string) *krules.Report {
	if name == c.name || key == &noValidateKey || key == &noTrackKey {
		return nil
	}
	g.mu.Lock()
	warned := g.nameWarned
	g.nameWarned = true
	g.mu.Unlock()
	if warned {
		return nil
	}
	return warnf(krules.LockdepMisuse, "Looking for class %q with key %p, but found a different class %q with the same key", name, key, c.name)
}

// zapKey drops every class of key with its dependencies and chains
// (lockdep_unregister_key → zap_class).
func (g *graph) zapKey(key *Key) {
	g.mu.Lock()
	defer g.mu.Unlock()
	dead := map[*class]bool{}
	for _, c := range g.classes {
		if c != nil && c.key == key {
			dead[c] = true
		}
	}
	g.zapLocked(dead)
}

func (g *graph) zapLocked(dead map[*class]bool) {
	if len(dead) == 0 {
		return
	}
	for c := range dead {
		c.state.Or(stStale)
		for _, e := range c.after {
			if !dead[e.to] {
				e.to.before = removeEdge(e.to.before, e)
			}
			g.entries -= 2
		}
		for _, e := range c.before {
			if !dead[e.from] {
				e.from.after = removeEdge(e.from.after, e)
				g.entries -= 2
			}
		}
		c.after, c.before = nil, nil
		g.classes[c.idx] = nil
		g.nclasses--
		g.zapped++
		g.byKey.Delete(classKey{c.key, c.sub})
	}
	// Drop the chains that mention a dead class and rebuild the table.
	kept := g.chainList[:0]
	for _, ch := range g.chainList {
		mentions := false
		for _, h := range ch.hlocks {
			if dead[h.c] {
				mentions = true
				break
			}
		}
		if mentions {
			g.zappedCh++
			g.chainHlocks -= len(ch.hlocks)
			continue
		}
		kept = append(kept, ch)
	}
	for i := len(kept); i < len(g.chainList); i++ {
		g.chainList[i] = nil
	}
	g.chainList = kept
	t := newChainTable(max(1024, 2*len(kept)))
	for _, ch := range kept {
		t.insert(ch.key)
	}
	g.chains.Store(t)
}

func removeEdge(list []*edge, e *edge) []*edge {
	for i, x := range list {
		if x == e {
			return append(list[:i:i], list[i+1:]...)
		}
	}
	return list
}
