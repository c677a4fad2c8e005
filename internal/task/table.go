package task

import (
	"math"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// The table maps goroutine ids to records. It is a fixed array of buckets
// (goroutine ids are sequential, so the low bits spread live goroutines
// evenly), each a singly linked chain of nodes, and a node belongs to one
// goroutine for its whole life.
//
//   - A record "exists" while its node is busy. The owner marks it busy and
//     idle itself with plain stores, no atomic read-modify-write: a lock
//     pair that claims and drops the record pays no more atomic operations
//     than the lock itself. An idle node stays in its bucket so that the
//     same goroutine takes it again for free.
//   - Idle nodes beyond idlePerBucket are retired (unlinked) when a new node
//     joins the bucket. Retiring races with an owner that is just taking its
//     idle node again; the two sides form an asymmetric Dekker pair: the
//     owner stores busy and then loads retiring, the trimmer stores
//     retiring, issues a process-wide barrier (membarrier(2), see barrier_*.go)
//     and then loads busy. At least one of them sees the other: the owner
//     backs off, or the trimmer leaves the node alone.
//   - Nodes are never reused by another goroutine: an owner may be descheduled
//     between finding its node and storing busy, and that late store must not
//     land in somebody else's record. Retired nodes keep their next pointer,
//     so a walker standing on one still reaches the rest of the chain; the
//     garbage collector takes them.
//   - Nodes are pushed and retired under a per-bucket spin lock, which the
//     owner's fast path never takes.
//   - Every chain ends in chainEnd, not nil, so that a head is never nil.

const (
	bucketBits    = 12
	bucketMask    = 1<<bucketBits - 1
	idlePerBucket = 2
)

type bucket struct {
	head  atomic.Pointer[Task]
	nodes atomic.Int32
	mu    atomic.Uint32
}

var table [1 << bucketBits]bucket

func bucketFor(id int64) *bucket { return &table[uint64(id)&bucketMask] }

// chainEnd ends every bucket's chain in place of nil, so that no head is
// ever nil and the head-only fast paths (ClaimHead, PeekHead, LookupHead)
// test the head's owner without testing the head first. Two instructions a
// lookup: a nonblock Start+End pair 138 -> 132 instructions, an
// invalidation with 1 notifier 733 -> 720, an RWSem RLock+RUnlock pair
// 239 -> 232, a signalling section 274 -> 266, for 7 more (54 -> 61) in a
// MightSleep by a goroutine that has no node in an empty bucket, which
// tests the head's owner before it knows the bucket is empty (cachegrind,
// AMD EPYC (Zen 3, KVM); counts move by 1 or 2 with code alignment). It
// is owned by no goroutine id (noOwner), never busy, and never written
// after init. Its next is itself: walks stop at it, not at nil (a node's
// next is never nil), and one that steps past a head that is chainEnd
// stays there.
var chainEnd = func() *Task {
	t := new(Task)
	t.owner.Store(noOwner)
	t.next.Store(t)
	return t
}()

// noOwner is chainEnd's owner: no goroutine id (the runtime's are positive,
// GoID's "unknown" is 0 and StackID's failure -1), and small enough for a
// compare's immediate, as Peek tests it.
const noOwner = math.MinInt32

func init() {
	for i := range table {
		table[i].head.Store(chainEnd)
	}
}

// lookup returns the busy record of goroutine id, or nil.
func lookup(id int64) *Task {
	for t := bucketFor(id).head.Load(); t != chainEnd; t = t.next.Load() {
		if t.owner.Load() == id {
			if t.busy.Load() != 0 {
				return t
			}
			return nil
		}
	}
	return nil
}

// claimSlow is Claim's path when its node was being retired or is not in
// the bucket: under the bucket lock, where no trim runs, the caller's node is
// taken, or if it was retired or never existed, a new one is pushed. (A
// retired node may be left with busy set by the owner's late take; it is out
// of the bucket and nobody reads it.)
func claimSlow(id int64) *Task {
	b := bucketFor(id)
	b.lock()
	defer b.unlock()
	for t := b.head.Load(); t != chainEnd; t = t.next.Load() {
		if t.owner.Load() == id {
			ownerStore(&t.busy, 1)
			return t
		}
	}
	t := &(new(paddedTask).Task)
	t.ID = id
	t.owner.Store(id)
	t.busy.Store(1)
	t.next.Store(b.head.Load())
	b.head.Store(t)
	noteNodes(1)
	if b.nodes.Add(1) > idlePerBucket {
		b.trimLocked()
	}
	return t
}

// trimLocked retires idle nodes beyond the first idlePerBucket; the
// bucket lock is held.
func (b *bucket) trimLocked() {
	idle, marked := 0, 0
	for t := b.head.Load(); t != chainEnd; t = t.next.Load() {
		if t.busy.Load() == 0 {
			if idle++; idle > idlePerBucket {
				t.retiring.Store(1)
				marked++
			}
		}
	}
	if marked == 0 {
		return
	}
	ok := stealerBarrier()
	var prev *Task
	for t := b.head.Load(); t != chainEnd; {
		next := t.next.Load()
		if t.retiring.Load() != 0 {
			if ok && t.busy.Load() == 0 {
				if prev == nil {
					b.head.Store(next)
				} else {
					prev.next.Store(next)
				}
				b.nodes.Add(-1)
				noteNodes(-1)
				t = next
				continue // stays retiring: its owner can never take it again
			}
			t.retiring.Store(0) // its owner came back first (or no barrier)
		}
		prev, t = t, next
	}
}

// paddedTask is how a record is allocated: its size a multiple of a cache
// line, so that the runtime's size class for it (192 bytes today) starts
// every object on a line of its own. The owner writes its record on every
// lock and unlock; two records sharing a line would make two goroutines on
// two CPUs fight over it (false sharing), as adjacent 160-byte records did.
type paddedTask struct {
	Task
	_ [(cacheLine - unsafe.Sizeof(Task{})%cacheLine) % cacheLine]byte
}

// cacheLine is the line size the padding assumes (x86-64 and most arm64).
const cacheLine = 64

func (b *bucket) lock() {
	for !b.mu.CompareAndSwap(0, 1) {
		runtime.Gosched()
	}
}

func (b *bucket) unlock() { b.mu.Store(0) }
