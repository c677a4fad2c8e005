package task

import "runtime/trace"

// SectionRegion is the runtime/trace region a non-block or atomic section
// opened when it was entered while the execution tracer was on. The nonblock
// package keeps them in the record because a region must end on the
// goroutine that started it, and only the owner touches its record.
type SectionRegion struct {
	// Region is the open region; End it on the owning goroutine only.
	Region *trace.Region
	// Atomic says the section is an atomic one (preempt_disable), not a
	// non-block one.
	Atomic bool
	// Depth is the section's nesting depth once entered: non_block_count,
	// or preempt_count for an atomic section.
	Depth int32
}
