package mempool

import (
	"runtime"
	"sync/atomic"
)

// The pool's lock and counters share one word, count:
//
//	bit 0       the lock (pool->lock)
//	bits 1-31   a mirror of nr (curr_nr): the kernel's min_nr is an int, so
//	            a reserve holds at most MaxInt32 elements
//	bits 32-63  out: the elements handed out and not yet freed
//
// The kernel's pool->lock is a spinlock, and so is this one: the sections
// under it are a few loads and stores (and, in debug mode, poisoning), and
// none sleeps. Living in the count word, it lets a reserve path move an
// element between the reserve and out with the lock's own two atomic
// read-modify-writes and no third: the unlock adds the move, and a Free
// that refills takes its element back out of out in the swap that locks.
//
// out is one counter for every path, exact in every mode: the allocator's
// hand-outs and the frees back to it add to it without the lock, the
// reserve's under it, in the same word. Close reads it (outstanding), and
// Free refuses a free when it is zero. (A second counter for the reserve
// paths, kept under the lock, let Free's check read a count that missed the
// reserve's elements.) The mirror of nr is moved at each unlock by what the
// section did to nr, and is read without the lock by Free's first test,
// the kernel's READ_ONCE of curr_nr.
const (
	locked     = 1
	reserveOne = 1 << 1
	maxMinNr   = 1<<31 - 1
	outShift   = 32
	outOne     = 1 << outShift

	// The moves of the count word at an unlock (on top of dropping the
	// lock): an element handed out from the reserve, one taken back into
	// it (counted out of out already by lockReturning), one taken out of
	// it for good. A free to the allocator takes no lock and moves
	// freeToAllocator.
	takeFromReserve = outOne - reserveOne
	intoReserve     = reserveOne
	outOfReserve    = 1<<64 - reserveOne
	freeToAllocator = 1<<64 - outOne
)

// outOf and reserveOf unpack the count word.
func outOf(c uint64) int64   { return int64(c >> outShift) }
func reserveOf(c uint64) int { return int(c>>1) & maxMinNr }

// checkOut panics if a hand-out that left the count word at c overflowed
// out (c < outOne: it wrapped to zero), rather than let the count, and with
// it Free's refusals and Close's report, go wrong.
func checkOut(c uint64) {
	if c < outOne {
		panic("mempool: more than 2^32-1 elements outstanding")
	}
}

// countWord is the count word, with the lock's operations on it.
type countWord struct{ v atomic.Uint64 }

// load returns the word, as Free's first test reads it without the lock.
func (w *countWord) load() uint64 { return w.v.Load() }

// lock takes the pool's lock: spin_lock(&pool->lock). Inlined, one atomic
// or; with its unlock, the reserve path of Alloc holds two locked
// instructions, where sync.Mutex and the separate counters it guarded held
// four (a reserve round of Alloc and Free: 8 -> 4 locked instructions, 251
// -> 236 instructions, cachegrind, AMD EPYC (Zen 3, KVM)).
func (w *countWord) lock() {
	if w.v.Or(locked)&locked != 0 {
		w.lockSlow(false)
	}
}

// lockReturning is lock for a Free that may refill the reserve, which has
// read the word as c and seen an element out: in the same swap it counts
// the element back in (out-1), which the Free needs whether the element
// then refills the reserve or goes to the allocator. It returns false,
// without the lock, if no element is out: the free is a double or foreign
// one. Inlined, its first try is the Free's first swap on the word, with
// the value the Free's unlocked test read (part of the 8 -> 4 above).
func (w *countWord) lockReturning(c uint64) bool {
	c &^= locked // a swap expecting the lock free fails if it is held
	return w.v.CompareAndSwap(c, c-outOne+locked) || w.lockSlow(true)
}

// lockSlow spins for the lock, as lockclass's spin locks do: backing off
// exponentially up to a few hundred loads, then yielding the processor
// between tries, so that a holder that was preempted gets to run.
func (w *countWord) lockSlow(returning bool) bool {
	for i := 1; ; i++ {
		c := w.v.Load()
		if returning && c < outOne {
			return false
		}
		if c&locked == 0 {
			n := c | locked
			if returning {
				n -= outOne
			}
			if w.v.CompareAndSwap(c, n) {
				return true
			}
			continue
		}
		if i < 10 {
			for j := 0; j < 1<<i && w.v.Load()&locked != 0; j++ {
			}
			continue
		}
		runtime.Gosched()
	}
}

// unlock drops the pool's lock (spin_unlock) and moves the count word by
// delta in the same atomic add. It returns the word after the add.
func (w *countWord) unlock(delta uint64) uint64 { return w.v.Add(delta - locked) }

// add moves the count word by delta without the lock: a hand-out from the
// allocator (outOne), or a move made while holding the lock that the
// unlock does not carry.
func (w *countWord) add(delta uint64) uint64 { return w.v.Add(delta) }

// returned counts an element freed to the allocator back in, unless none
// is out: then the free is a double or foreign one that the pool
// recognises without debug mode, and the caller reports and refuses it, so
// that the count stays true and the element reaches neither the reserve
// (which would hand it out twice) nor the allocator. (lockReturning does
// the same for a free that may refill the reserve.)
func (w *countWord) returned() bool {
	for {
		c := w.v.Load()
		if c < outOne {
			return false
		}
		if w.v.CompareAndSwap(c, c+freeToAllocator) {
			return true
		}
	}
}

// The pool's lock.
func (p *Pool[T]) lock()                      { p.count.lock() }
func (p *Pool[T]) unlock(delta uint64) uint64 { return p.count.unlock(delta) }
