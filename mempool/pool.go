package mempool

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/nonblock"
)

// ErrClosed is returned by Alloc on a pool after Close.
var ErrClosed = errors.New("mempool: pool closed")

// Pool is a mempool (mempool_t): a LIFO reserve of elements of type T in
// front of an allocator. The zero value is not usable; create one with New
// or a constructor. A Pool is safe for concurrent use and must not be
// copied.
type Pool[T any] struct {
	mu sync.Mutex // pool->lock
	// elements is the reserve, a LIFO stack; curr mirrors its length and
	// minNr the target, both written under mu and read without it by Free's
	// first test (READ_ONCE in the kernel).
	elements []T
	curr     atomic.Int64
	minNr    atomic.Int64
	closed   atomic.Bool

	alloc func(gfp.Flags) (T, error)
	free  func(T)
	wait  nonblock.WaitQueue
	// sleepers counts the Allocs between preparing to wait and the end of
	// their sleep, under mu: Free wakes the queue only if it is non-zero
	// (wq_has_sleeper). A waiter prepares under mu after seeing the reserve
	// empty, so a refill either comes after and sees it, or before and the
	// waiter takes the element instead.
	sleepers int

	cfg config
	ops elemOps[T]
	dbg *debugState // nil unless debug mode

	// out counts elements handed out and not yet freed, for Close
	// (outstanding) and for Free, which refuses a free when none is out.
	// One atomic for every path: a second counter kept under mu for the
	// reserve paths saved two atomics a round but let Free's check read a
	// count that missed the reserve's elements.
	out atomic.Int64
	// warnedZero is the VM_WARN_ON_ONCE for __GFP_ZERO.
	warnedZero atomic.Bool

	st poolStats // under mu, but for timeouts
}

// New creates a pool of minNr elements (mempool_create): it preallocates
// max(1, minNr) elements with alloc and the flags of WithGFP (GFP_KERNEL by
// default) and keeps them in reserve. If an allocation fails, what was taken
// is freed and New returns the error. free gives an element back to the
// allocator.
//
// Keeping one element when minNr is 0 (a 2025 fix) lets a Free wake
// waiters even in a pool with no reserve.
func New[T any](minNr int, alloc func(flags gfp.Flags) (T, error), free func(T), opts ...Option) (*Pool[T], error) {
	return newPool(minNr, alloc, free, genericOps[T](), opts)
}

func newPool[T any](minNr int, alloc func(gfp.Flags) (T, error), free func(T), ops elemOps[T], opts []Option) (*Pool[T], error) {
	if minNr < 0 {
		return nil, fmt.Errorf("mempool: min_nr %d", minNr)
	}
	if alloc == nil || free == nil {
		return nil, errors.New("mempool: alloc and free are required")
	}
	p := &Pool[T]{alloc: alloc, free: free, cfg: newConfig(opts), ops: ops}
	if p.cfg.debug {
		p.dbg = newDebugState()
	}
	p.minNr.Store(int64(minNr))
	n := max(1, minNr)
	p.elements = make([]T, 0, n)
	for len(p.elements) < n {
		x, err := alloc(p.cfg.gfp)
		if err != nil {
			p.exit()
			return nil, fmt.Errorf("mempool %s: preallocating element %d of %d: %w", p.cfg.name, len(p.elements)+1, n, err)
		}
		p.addElement(x)
	}
	return p, nil
}

// addElement pushes x onto the reserve, poisoning it in debug mode
// (add_element). The caller holds mu or owns the pool.
func (p *Pool[T]) addElement(x T) {
	if p.dbg != nil && p.ops.bytes != nil {
		poison(p.ops.bytes(x))
	}
	if p.ops.reserve != nil {
		p.ops.reserve(x, true)
	}
	p.elements = append(p.elements, x)
	p.curr.Store(int64(len(p.elements)))
}

// removeElement pops the newest element (remove_element). In debug mode it
// checks and clears the poison and returns where a mismatch starts (-1 if
// none), to be reported once the lock is dropped. The caller holds mu.
func (p *Pool[T]) removeElement() (T, int) {
	n := len(p.elements) - 1
	x := p.elements[n]
	var zero T
	p.elements[n] = zero
	p.elements = p.elements[:n]
	p.curr.Store(int64(n))
	if p.ops.reserve != nil {
		p.ops.reserve(x, false)
	}
	bad := -1
	if p.dbg != nil && p.ops.bytes != nil {
		bad = checkPoison(p.ops.bytes(x))
	}
	return x, bad
}

// exit gives every reserved element back to the allocator (mempool_exit).
func (p *Pool[T]) exit() {
	p.mu.Lock()
	elems := p.elements
	p.elements = nil
	p.curr.Store(0)
	p.mu.Unlock()
	for i := len(elems) - 1; i >= 0; i-- {
		x := elems[i]
		if p.ops.reserve != nil {
			p.ops.reserve(x, false)
		}
		if p.dbg != nil && p.ops.bytes != nil {
			if at := checkPoison(p.ops.bytes(x)); at >= 0 {
				p.reportPoison(x, at)
			}
		}
		p.free(x)
	}
}

// outstanding returns the number of elements handed out and not yet freed.
func (p *Pool[T]) outstanding() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Load()
}

// Name returns the pool's name.
func (p *Pool[T]) Name() string { return p.cfg.name }

// MinNr returns the reserve target (min_nr).
func (p *Pool[T]) MinNr() int { return int(p.minNr.Load()) }

// Saturated reports whether the reserve is full: mempool_is_saturated().
func (p *Pool[T]) Saturated() bool { return p.curr.Load() >= p.minNr.Load() }
