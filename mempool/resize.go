package mempool

import (
	"fmt"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// Resize changes the reserve target to newMin (mempool_resize), which must
// be positive; it may sleep. Shrinking frees the surplus reserve elements
// to the allocator at once. Growing raises the target and tries to fill the
// reserve with GFP_KERNEL allocations; a failed allocation is not an error,
// since later frees refill the reserve. Alloc and Free may run
// concurrently; Close must not.
func (p *Pool[T]) Resize(newMin int) error {
	if newMin <= 0 {
		krules.Emit(krules.Bug(krules.MempoolMisuse, fmt.Sprintf("BUG_ON(new_min_nr <= 0): mempool_resize(%s, %d)", p.cfg.name, newMin), 0))
		lockclass.TaintNowUnreliable()
		return fmt.Errorf("mempool: resize to %d", newMin)
	}
	if newMin > maxMinNr {
		return fmt.Errorf("mempool: resize to %d: min_nr is at most %d", newMin, maxMinNr)
	}
	nonblock.MightSleep()
	p.lock()
	if int64(newMin) <= p.minNr.Load() {
		for newMin < p.nr {
			x, bad := p.pop(), -1
			nr := p.nr
			if !p.plain {
				bad = p.leaveReserve(x)
			}
			p.unlock(outOfReserve)
			if bad >= 0 {
				p.reportPoison(x, bad, nr)
			}
			p.free(x)
			p.lock()
		}
		p.minNr.Store(int64(newMin))
		p.unlock(0)
		return nil
	}
	p.unlock(0)

	// Grow the array outside the lock, as the kernel allocates it.
	grown := make([]T, newMin)
	p.lock()
	if int64(newMin) <= p.minNr.Load() {
		// Somebody else grew the pool meanwhile.
		p.unlock(0)
		return nil
	}
	if newMin > len(p.elements) {
		copy(grown, p.elements[:p.nr])
		p.elements = grown
	}
	p.minNr.Store(int64(newMin))
	for int64(p.nr) < p.minNr.Load() {
		p.unlock(0)
		x, err := p.alloc(gfp.Kernel)
		if err != nil {
			return nil
		}
		p.lock()
		if int64(p.nr) < p.minNr.Load() && !p.closed.Load() {
			p.addElement(x)
			p.count.add(intoReserve) // the mirror of nr, the lock held
			continue
		}
		p.unlock(0)
		p.free(x) // raced with a refill
		return nil
	}
	p.unlock(0)
	return nil
}
