package mempool

import (
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"unsafe"

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
	// count is the pool's lock (pool->lock) and two counters in one word
	// (lock.go): out, the elements handed out and not yet freed, and a
	// mirror of nr.
	count countWord
	// elements[:nr] is the reserve, a LIFO stack (pool->elements and
	// curr_nr), under the lock. The array has room for at least minNr
	// elements (one when minNr is 0) and is replaced only by Resize, so a
	// push or a pop writes one slot and nr, not the slice header.
	elements []T
	nr       int
	// minNr is the target, written under the lock and read without it by
	// Free's first test.
	minNr  atomic.Int64
	closed atomic.Bool

	alloc func(gfp.Flags) (T, error)
	free  func(T)
	wait  nonblock.WaitQueue
	// sleepers counts the Allocs between preparing to wait and the end of
	// their sleep, under the lock: Free wakes the queue only if it is
	// non-zero (wq_has_sleeper). A waiter prepares under the lock after
	// seeing the reserve empty, so a refill either comes after and sees
	// it, or before and the waiter takes the element instead.
	sleepers int

	// plain is set when the pool has no per-element work to do: no debug
	// mode and neither a free check nor a reserve hook. The hot paths
	// then test it once instead of each hook.
	plain bool
	// nilWords is how many leading pointer words of an element are all nil
	// in its nil value (0: T has no nil; 1: pointer-like, a slice's data;
	// 2: an interface), so that Free tests nil without a call.
	nilWords uint8
	cfg      config
	ops      elemOps[T]
	dbg      *debugState // nil unless debug mode

	// warnedZero is the VM_WARN_ON_ONCE for __GFP_ZERO.
	warnedZero atomic.Bool

	st poolStats // under the lock
}

// New creates a pool of minNr elements (mempool_create): it preallocates
// max(1, minNr) elements with alloc and the flags of WithGFP (GFP_KERNEL by
// default) and keeps them in reserve. If an allocation fails, what was taken
// is freed and New returns the error. free gives an element back to the
// allocator. minNr is at most math.MaxInt32, the kernel's int; at most
// 2^32-1 elements may be out at once (Alloc panics beyond).
//
// Keeping one element when minNr is 0 (a 2025 fix) lets a Free wake
// waiters even in a pool with no reserve.
func New[T any](minNr int, alloc func(flags gfp.Flags) (T, error), free func(T), opts ...Option) (*Pool[T], error) {
	return newPool(minNr, alloc, free, genericOps[T](), opts)
}

func newPool[T any](minNr int, alloc func(gfp.Flags) (T, error), free func(T), ops elemOps[T], opts []Option) (*Pool[T], error) {
	if minNr < 0 || minNr > maxMinNr {
		return nil, fmt.Errorf("mempool: min_nr %d", minNr)
	}
	if alloc == nil || free == nil {
		return nil, errors.New("mempool: alloc and free are required")
	}
	p := &Pool[T]{alloc: alloc, free: free, cfg: newConfig(opts), ops: ops, nilWords: nilWords[T]()}
	if p.cfg.debug {
		p.dbg = newDebugState()
	}
	p.plain = p.dbg == nil && ops.check == nil && ops.reserve == nil
	p.minNr.Store(int64(minNr))
	p.elements = make([]T, max(1, minNr))
	for p.nr < len(p.elements) {
		x, err := alloc(p.cfg.gfp)
		if err != nil {
			p.exit()
			return nil, fmt.Errorf("mempool %s: preallocating element %d of %d: %w", p.cfg.name, p.nr+1, len(p.elements), err)
		}
		p.lock()
		p.addElement(x)
		p.unlock(reserveOne)
	}
	return p, nil
}

// nilWords derives Pool.nilWords from T: pointer-like kinds are nil when
// their first word (a slice's data pointer) is, interfaces when both words
// are, and other kinds never.
func nilWords[T any]() uint8 {
	switch reflect.TypeFor[T]().Kind() {
	case reflect.Pointer, reflect.Map, reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Slice:
		return 1
	case reflect.Interface:
		return 2
	}
	return 0
}

// isNil reports whether x is T's nil value.
func (p *Pool[T]) isNil(x T) bool {
	switch p.nilWords {
	case 1:
		return *(*unsafe.Pointer)(unsafe.Pointer(&x)) == nil
	case 2:
		w := (*[2]unsafe.Pointer)(unsafe.Pointer(&x))
		return w[0] == nil && w[1] == nil
	}
	return false
}

// addElement pushes x onto the reserve, poisoning it in debug mode
// (add_element). The caller holds the lock, has made sure the array has
// room, and adds reserveOne to the count word as it unlocks.
func (p *Pool[T]) addElement(x T) {
	if !p.plain {
		p.enterReserve(x)
	}
	p.elements[p.nr] = x
	p.nr++
}

// enterReserve is addElement's per-element work.
func (p *Pool[T]) enterReserve(x T) {
	if p.dbg != nil && p.ops.bytes != nil {
		poison(p.ops.bytes(x))
	}
	if p.ops.reserve != nil {
		p.ops.reserve(x, true)
	}
}

// pop pops the newest element (remove_element). The caller holds the lock,
// has seen the reserve non-empty, moves the count word as it unlocks and,
// unless the pool is plain, calls leaveReserve.
func (p *Pool[T]) pop() T {
	p.nr--
	x := p.elements[p.nr]
	var zero T
	p.elements[p.nr] = zero // the reserve must not keep it alive
	return x
}

// leaveReserve is pop's per-element work: in debug mode it checks and
// clears the poison and returns where a mismatch starts (-1 if none), to
// be reported once the lock is dropped.
func (p *Pool[T]) leaveReserve(x T) int {
	if p.ops.reserve != nil {
		p.ops.reserve(x, false)
	}
	if p.dbg != nil && p.ops.bytes != nil {
		return checkPoison(p.ops.bytes(x))
	}
	return -1
}

// exit gives every reserved element back to the allocator (mempool_exit).
func (p *Pool[T]) exit() {
	p.lock()
	elems := p.elements[:p.nr]
	p.elements = nil
	n := p.nr
	p.nr = 0
	p.unlock(-uint64(n) * reserveOne)
	for i := len(elems) - 1; i >= 0; i-- {
		x := elems[i]
		if !p.plain {
			if at := p.leaveReserve(x); at >= 0 {
				p.reportPoison(x, at, i) // mempool_exit pops one at a time
			}
		}
		p.free(x)
	}
}

// outstanding returns the number of elements handed out and not yet freed.
func (p *Pool[T]) outstanding() int64 { return outOf(p.count.load()) }

// Name returns the pool's name.
func (p *Pool[T]) Name() string { return p.cfg.name }

// MinNr returns the reserve target (min_nr).
func (p *Pool[T]) MinNr() int { return int(p.minNr.Load()) }

// Saturated reports whether the reserve is full: mempool_is_saturated().
func (p *Pool[T]) Saturated() bool {
	return int64(reserveOf(p.count.load())) >= p.minNr.Load()
}
