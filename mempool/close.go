package mempool

import (
	"fmt"

	"github.com/krules/krules"
)

// Close destroys the pool (mempool_destroy): every reserve element goes
// back to the allocator. Elements still out are a bug in the caller; they
// are reported (with where each was allocated, in debug mode) and Close
// returns an error saying how many. Freeing them later hands them straight
// to the allocator. Waiting Allocs, and those whose allocator call is in
// flight, return ErrClosed at once. Close is idempotent.
func (p *Pool[T]) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	p.exit()
	p.wait.WakeUp()
	n := p.outstanding()
	if n <= 0 {
		return nil
	}
	msg := fmt.Sprintf("mempool_destroy(%s): %d element(s) still outstanding", p.cfg.name, n)
	if p.dbg != nil {
		msg += "\n" + p.dbg.describe()
	}
	krules.Emit(krules.Warn(krules.MempoolMisuse, msg, 0))
	return fmt.Errorf("mempool %s: closed with %d elements outstanding", p.cfg.name, n)
}
