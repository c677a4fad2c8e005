package mempool

import "fmt"

type poolStats struct {
	fromReserve       int64
	allocatorFailures int64
	waits             int64
	timeouts          int64
	failed            int64
	refills           int64
}

// Stats is a snapshot of a pool's counters.
type Stats struct {
	Name string
	// MinNr and Reserve are the reserve's target and current level
	// (min_nr, curr_nr).
	MinNr, Reserve int
	// Outstanding counts elements handed out and not yet freed.
	Outstanding int64
	// FromReserve counts allocations the reserve served: allocator
	// failures the reserve absorbed.
	FromReserve int64
	// AllocatorFailures counts failed calls to the allocator, first passes
	// included.
	AllocatorFailures int64
	// Waits counts sleeps for a free; Timeouts those that ended without one.
	Waits, Timeouts int64
	// Failed counts Allocs that returned an error (flags without
	// DirectReclaim and an empty reserve).
	Failed int64
	// Refills counts frees that went to the reserve.
	Refills int64
}

// Stats returns the pool's counters.
func (p *Pool[T]) Stats() Stats {
	p.lock()
	defer p.unlock(0)
	return Stats{
		Name:              p.cfg.name,
		MinNr:             int(p.minNr.Load()),
		Reserve:           p.nr,
		Outstanding:       p.outstanding(),
		FromReserve:       p.st.fromReserve,
		AllocatorFailures: p.st.allocatorFailures,
		Waits:             p.st.waits,
		Timeouts:          p.st.timeouts,
		Failed:            p.st.failed,
		Refills:           p.st.refills,
	}
}

// String prints the counters on one line.
func (s Stats) String() string {
	return fmt.Sprintf("%s: min_nr %d curr_nr %d outstanding %d from_reserve %d allocator_failures %d waits %d timeouts %d failed %d refills %d",
		s.Name, s.MinNr, s.Reserve, s.Outstanding, s.FromReserve, s.AllocatorFailures, s.Waits, s.Timeouts, s.Failed, s.Refills)
}
