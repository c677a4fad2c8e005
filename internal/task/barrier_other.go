//go:build !linux || !amd64 || race

package task

import "sync/atomic"

// Without the amd64 membarrier pairing (and in race builds, whose detector
// cannot see it) both sides of the table's Dekker pair use sequentially
// consistent atomics, which is correct on its own.

const plainStores = false

// ownerStore is the owner's store to its node's busy word.
func ownerStore(p *atomic.Int32, v int32) { p.Store(v) }

// stealerBarrier has nothing to do: the atomics already order both sides.
func stealerBarrier() bool { return true }
