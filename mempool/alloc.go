package mempool

import (
	"context"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/internal/stack"
)

// Alloc returns an element: mempool_alloc().
//
//  1. __GFP_ZERO is reported (once per pool) and passed on: a pool cannot
//     zero what it hands out from its reserve.
//  2. MightAlloc(flags), with Alloc (or AllocContext) as the site reports
//     name where fs_reclaim was taken (gfp.MightAllocAt), as might_alloc
//     is inlined into mempool_alloc_noprof.
//  3. NoMemalloc, NoRetry and NoWarn are added: the pool is the fallback,
//     so the allocator must not dip into the emergency reserves, loop or
//     complain.
//  4. The first try is without DirectReclaim and IO.
//  5. If the allocator fails, the newest reserve element is taken.
//  6. If the reserve is empty on the first pass, the allocator is tried at
//     once with the caller's flags.
//  7. Then, without DirectReclaim, Alloc fails with gfp.ErrNoMemory.
//  8. Otherwise it waits until a Free refills the reserve (or the timeout
//     passes) and starts again at 5 with the caller's flags.
//
// So with DirectReclaim Alloc never fails; it may wait as long as elements
// are out. Without it, it tries the allocator twice and the reserve once,
// and never sleeps.
func (p *Pool[T]) Alloc(flags gfp.Flags) (T, error) {
	return p.allocate(context.Background(), flags)
}

// AllocContext is Alloc with a killable wait: it returns ctx.Err() if ctx
// is done while it waits.
func (p *Pool[T]) AllocContext(ctx context.Context, flags gfp.Flags) (T, error) {
	return p.allocate(ctx, flags)
}

//go:noinline
func (p *Pool[T]) allocate(ctx context.Context, flags gfp.Flags) (T, error) {
	var zero T
	if flags&gfp.Zero != 0 && !p.warnedZero.Swap(true) {
		krules.Emit(krules.Warn(krules.MempoolMisuse, "VM_WARN_ON_ONCE(gfp_mask & __GFP_ZERO): mempool "+p.cfg.name+" cannot return zeroed elements", 1))
	}
	// might_alloc is inlined into mempool_alloc_noprof: reports name
	// Alloc or AllocContext, allocate's caller, as where fs_reclaim was
	// taken. Reading the site costs "mempool Alloc+Free, from reserve"
	// 233 -> 240 instructions and "allocator ok" 743 -> 747 (cachegrind,
	// AMD EPYC (Zen 3, KVM)); checking in Alloc and AllocContext
	// themselves, which are then not inlined, cost 245 and 751.
	gfp.MightAllocAt(flags, stack.ReturnPC())
	flags |= gfp.NoMemalloc | gfp.NoRetry | gfp.NoWarn
	tmp := flags &^ (gfp.DirectReclaim | gfp.IO)
	reported := false
	var stalled time.Duration // waited since the last wake-up
	for {
		if p.closed.Load() {
			return zero, ErrClosed
		}
		if x, err := p.alloc(tmp); err == nil {
			checkOut(p.count.add(outOne))
			if !p.plain {
				p.handOut(x)
			}
			return x, nil
		}
		p.lock()
		p.st.allocatorFailures++
		if p.closed.Load() {
			// Closed while the allocator ran: Close's wake-up may have
			// come already, so a wait now would sleep the whole timeout.
			// Close sets closed before it takes the lock to empty the
			// reserve, so seen here under the lock it is never missed.
			p.unlock(0)
			return zero, ErrClosed
		}
		if p.nr > 0 {
			if !p.plain {
				return p.takeReserved(), nil
			}
			// takeReserved inline, for a pool with no per-element work
			// (no call, no hook tests): with Free, a round is 236
			// instructions and 4 locked ones (cachegrind), 19.6 ns beside
			// sync.Pool's 14.2 (min of 20 noisy runs), AMD EPYC (Zen 3,
			// KVM); 373, 8 and 42 ns before.
			x := p.pop()
			p.st.fromReserve++
			checkOut(p.unlock(takeFromReserve))
			return x, nil
		}
		if tmp != flags {
			// The first pass found the reserve empty: try the allocator at
			// once with the caller's flags, without sleeping.
			p.unlock(0)
			tmp = flags
			continue
		}
		if flags&gfp.DirectReclaim == 0 {
			p.st.failed++
			p.unlock(0)
			return zero, gfp.ErrNoMemory
		}
		// Register for the wake-up before dropping the lock, so that a Free
		// right after the unlock is sure to wake us (prepare_to_wait).
		ticket := p.wait.Prepare()
		p.st.waits++
		p.sleepers++
		refills := p.st.refills
		p.unlock(0)
		p.dbg.waiting(1)
		woken, err := ticket.Sleep(ctx, p.cfg.timeout)
		p.dbg.waiting(-1)
		p.lock()
		p.sleepers--
		// A refill that came after the timeout, before this lock, found
		// us awake and woke nobody: it is the wake-up we missed.
		woken = woken || p.st.refills != refills
		p.unlock(0)
		if err != nil {
			return zero, err
		}
		if woken {
			stalled = 0
			continue
		}
		stalled += p.cfg.timeout
		if p.timedOut(!reported && stalled >= deadlockAfter, refills) {
			reported = true
		}
	}
}

// AllocPreallocated takes an element from the reserve only:
// mempool_alloc_preallocated(). It never calls the allocator and never
// sleeps; ok is false if the reserve is empty.
func (p *Pool[T]) AllocPreallocated() (x T, ok bool) {
	p.lock()
	if p.nr == 0 || p.closed.Load() {
		p.unlock(0)
		return x, false
	}
	return p.takeReserved(), true
}

// takeReserved pops the newest reserve element and hands it out. The
// caller holds the lock and has seen the reserve non-empty; takeReserved
// unlocks, then checks the element's poison outside the lock, as
// remove_element's caller does.
func (p *Pool[T]) takeReserved() T {
	x := p.pop()
	p.st.fromReserve++
	bad := -1
	if !p.plain {
		bad = p.leaveReserve(x)
	}
	c := p.unlock(takeFromReserve)
	checkOut(c)
	if !p.plain {
		if bad >= 0 {
			p.reportPoison(x, bad, reserveOf(c)) // curr_nr as this unlock left it
		}
		p.handOut(x)
	}
	return x
}

// handOut tracks an element given to a caller, in debug mode; the caller
// has counted it in out and tested plain.
func (p *Pool[T]) handOut(x T) {
	if p.dbg != nil && p.ops.key != nil {
		p.dbg.track(p.ops.key(x))
	}
}

// deadlockAfter is how long a waiter must go without a single wake-up
// before a deadlock is reported: the kernel's 5*HZ safety net, however
// short the pool's own retry timeout. A waiter whose elements were handed
// to another goroutine (a submitter whose I/O completes) is woken by their
// free; a shorter retry timeout only makes it retry sooner.
const deadlockAfter = DefaultTimeout

// timedOut counts a wait that ended without a wake-up and, in debug mode
// and if report, reports a goroutine that waits while holding elements of
// the pool when every element out is held by a waiter, the state in which
// no free can come (mm/mempool.c's forward-progress rule: a task must not
// hold one element while waiting for a second). refills is the pool's
// refill count when the wait began: a refill since then, even one that
// came after the holders were looked at, means a free did come, and the
// waiter will find it on its next try. It returns whether it reported.
func (p *Pool[T]) timedOut(report bool, refills int64) bool {
	p.lock()
	p.st.timeouts++
	p.unlock(0)
	if p.dbg == nil || !report {
		return false
	}
	held, stuck := p.dbg.heldBy()
	if len(held) == 0 || !stuck {
		return false
	}
	p.lock()
	freed := p.st.refills != refills
	p.unlock(0)
	if freed {
		return false
	}
	p.reportDeadlock(held)
	return true
}
