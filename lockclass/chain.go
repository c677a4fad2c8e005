package lockclass

import (
	"math/bits"
	"sync/atomic"
)

// chainTable is the lock-free chain cache (chainhash_table): an open-
// addressing set of 64-bit chain keys. Readers probe it with atomic loads and
// no lock; inserts and rebuilds happen under the graph lock, and a full table
// is replaced by a bigger copy, published atomically.
type chainTable struct {
	slots []atomic.Uint64
	mask  uint64
	n     int
}

func newChainTable(size int) *chainTable {
	n := 1
	for n < size {
		n <<= 1
	}
	return &chainTable{slots: make([]atomic.Uint64, n), mask: uint64(n - 1)}
}

// has reports whether key was validated before: the whole cost of a cached
// acquisition beyond its bookkeeping.
func (t *chainTable) has(key uint64) bool {
	for i := key & t.mask; ; i = (i + 1) & t.mask {
		switch t.slots[i].Load() {
		case key:
			return true
		case 0:
			return false
		}
	}
}

// insert adds key; the graph lock is held and the table has room.
func (t *chainTable) insert(key uint64) {
	for i := key & t.mask; ; i = (i + 1) & t.mask {
		switch t.slots[i].Load() {
		case key:
			return
		case 0:
			t.slots[i].Store(key)
			t.n++
			return
		}
	}
}

// chain is one cached lock chain (struct lock_chain), kept for the views.
type chain struct {
	key    uint64
	hlocks []chainLock
}

type chainLock struct {
	c    *class
	read uint8
}

// addChain inserts a validated chain; g.mu held. It grows the table at half
// load.
func (g *graph) addChain(key uint64, hl []chainLock) {
	t := g.chains.Load()
	if 2*(t.n+1) > len(t.slots) {
		nt := newChainTable(2 * len(t.slots))
		for _, ch := range g.chainList {
			nt.insert(ch.key)
		}
		g.chains.Store(nt)
		t = nt
	}
	t.insert(key)
	g.chainList = append(g.chainList, &chain{key: key, hlocks: hl})
	g.chainHlocks += len(hl)
}

// chainKeyMix folds one (class, read) id into a chain key
// (iterate_chain_key). It is order-sensitive; 0 is the initial key.
func chainKeyMix(key, id uint64) uint64 {
	// The low bit is forced so that no chain key is 0, the chain cache's
	// empty slot.
	return (bits.RotateLeft64(key, 27)^id)*0x9e3779b97f4a7c15 | 1
}
