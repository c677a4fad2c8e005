package task

import (
	"runtime"
	"sync/atomic"
)

// The table maps goroutine ids to records. It is a fixed array of buckets
// (goroutine ids are sequential, so the low bits spread live goroutines
// evenly), each a singly linked chain of records.
//
//   - Lookups never lock: the owner walks its bucket's chain comparing ids.
//     Only the owner inserts or frees its own record, so it always finds it.
//   - Freeing a record is one atomic store of id 0; the node stays in the
//     chain as an idle slot that the next goroutine hashing to the bucket
//     claims with one CAS. A goroutine that locks and unlocks in a loop
//     therefore reuses the same node and allocates nothing.
//   - Nodes are pushed, and idle nodes beyond idlePerBucket unlinked, under a
//     per-bucket spin lock. An unlinked node keeps its next pointer, so a
//     reader standing on it still reaches the rest of the chain; it is never
//     reused (its id is set to dead first), the garbage collector takes it.

const (
	bucketBits    = 12
	bucketMask    = 1<<bucketBits - 1
	idlePerBucket = 2
	dead          = -1
)

type bucket struct {
	head  atomic.Pointer[Task]
	nodes atomic.Int32
	mu    atomic.Uint32
}

var table [1 << bucketBits]bucket

func bucketFor(id int64) *bucket { return &table[uint64(id)&bucketMask] }

func lookup(id int64) *Task {
	for t := bucketFor(id).head.Load(); t != nil; t = t.next.Load() {
		if t.id.Load() == id {
			return t
		}
	}
	return nil
}

func insert(id int64) *Task {
	b := bucketFor(id)
	for t := b.head.Load(); t != nil; t = t.next.Load() {
		if t.id.Load() == 0 && t.id.CompareAndSwap(0, id) {
			t.ID = id
			return t
		}
	}
	t := &Task{ID: id}
	t.id.Store(id)
	b.lock()
	t.next.Store(b.head.Load())
	b.head.Store(t)
	b.nodes.Add(1)
	b.unlock()
	return t
}

// trim unlinks idle nodes beyond the first idlePerBucket.
func (b *bucket) trim() {
	b.lock()
	idle := 0
	var prev *Task
	for t := b.head.Load(); t != nil; {
		next := t.next.Load()
		if t.id.Load() == 0 {
			idle++
			if idle > idlePerBucket && t.id.CompareAndSwap(0, dead) {
				if prev == nil {
					b.head.Store(next)
				} else {
					prev.next.Store(next)
				}
				b.nodes.Add(-1)
				t = next
				continue
			}
		}
		prev, t = t, next
	}
	b.unlock()
}

func (b *bucket) lock() {
	for !b.mu.CompareAndSwap(0, 1) {
		runtime.Gosched()
	}
}

func (b *bucket) unlock() { b.mu.Store(0) }

// nodeCount returns the number of nodes, live or idle, across all buckets.
// Tests use it to show that churn does not grow the table.
func nodeCount() int {
	n := 0
	for i := range table {
		n += int(table[i].nodes.Load())
	}
	return n
}
