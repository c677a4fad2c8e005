package mmnotifier

import (
	"context"
	"fmt"
	"math/bits"
	"sync/atomic"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// IntervalOps is what an interval notifier does when its interval is
// invalidated: struct mmu_interval_notifier_ops.
//
// Invalidate is called for every invalidation that overlaps the interval,
// with the subscription, the range and cur_seq, an odd sequence number. It
// must call sub.SetSeq(curSeq) unconditionally, under the same driver lock
// its readers hold around ReadRetry, then stop using the secondary mappings
// of the overlap. It returns false only when the range is not Blockable and
// it would have to sleep (a TryLock that failed): then the non-blockable
// invalidation fails with ErrAgain. Unlike list notifiers, interval
// callbacks are not run inside a non-block section, as in the kernel.
type IntervalOps interface {
	Invalidate(sub *IntervalNotifier, r *Range, curSeq uint64) bool
}

// IntervalNotifier is struct mmu_interval_notifier: a subscription to the
// invalidations of one interval of an address space, with the sequence
// number readers use to detect that an invalidation collided with them
// (ReadBegin, ReadRetry).
type IntervalNotifier struct {
	// node is the tree node, part of the notifier as in the kernel, so
	// that nothing is allocated under the subscriptions lock and a hit
	// touches one object. inTree is false while it is not in
	// the tree (RB_EMPTY_NODE); next links the deferred list; removed says
	// Remove ran (all under the subscriptions lock).
	node    itNode[*IntervalNotifier]
	inTree  bool
	removed bool
	next    *IntervalNotifier

	seq atomic.Uint64 // invalidate_seq

	start, last uint64 // inclusive, like the kernel's interval tree
	ops         IntervalOps
	mm          *MM
	subs        *subscriptions
}

// Interval returns the interval's first and last address (inclusive).
func (sub *IntervalNotifier) Interval() (start, last uint64) { return sub.start, sub.last }

// MM returns the address space.
func (sub *IntervalNotifier) MM() *MM { return sub.mm }

// InsertInterval subscribes ops to the invalidations of
// [start, start+length) of mm: mmu_interval_notifier_insert. The first
// interval of an address space registers its interval tree, taking
// mmap_lock for writing, so the caller must not hold it (lockdep is told
// it might be taken); mm must have users.
//
// If an invalidation is running, the new interval starts out colliding:
// the first ReadBegin waits for it to end. While the tree is frozen (an
// invalidation overlaps an interval) the insertion itself is deferred to
// the end of that invalidation. Either way the caller must use the
// ReadBegin/ReadRetry pattern before trusting any mapping.
func InsertInterval(mm *MM, start, length uint64, ops IntervalOps) (*IntervalNotifier, error) {
	lockclass.MightLock(&mm.mmapLock)
	if subs := mm.subs.Load(); subs == nil || !subs.hasItree.Load() {
		mm.mmapLock.Lock()
		err := register(mm, nil, registerConfig{})
		mm.mmapLock.Unlock()
		if err != nil {
			return nil, err
		}
	}
	return insertInterval(mm, start, length, ops)
}

// InsertIntervalLocked is InsertInterval for a caller that holds mmap_lock
// for writing: mmu_interval_notifier_insert_locked.
func InsertIntervalLocked(mm *MM, start, length uint64, ops IntervalOps) (*IntervalNotifier, error) {
	lockclass.AssertHeldWrite(&mm.mmapLock)
	if subs := mm.subs.Load(); subs == nil || !subs.hasItree.Load() {
		if err := register(mm, nil, registerConfig{}); err != nil {
			return nil, err
		}
	}
	return insertInterval(mm, start, length, ops)
}

// insertInterval is __mmu_interval_notifier_insert.
func insertInterval(mm *MM, start, length uint64, ops IntervalOps) (*IntervalNotifier, error) {
	last, carry := bits.Add64(start, length-1, 0)
	if length == 0 || carry != 0 {
		return nil, ErrOverflow
	}
	if mm.users.Load() <= 0 {
		krules.Emit(krules.Warn(krules.NotifierMisuse,
			"WARN_ON(atomic_read(&mm->mm_users) <= 0): interval notifier inserted on "+mm.String()+", which has no users", 1))
		return nil, ErrInvalid
	}
	mm.grab()
	subs := mm.subs.Load()
	sub := &IntervalNotifier{start: start, last: last, ops: ops, mm: mm, subs: subs}
	sub.node.start, sub.node.last, sub.node.value = start, last, sub
	wasOdd := false
	subs.lock.Lock()
	if subs.active != 0 {
		if subs.seq.Load()&1 != 0 {
			// The tree is frozen: insert once the invalidation ends.
			subs.postpone(sub)
		} else {
			// A running invalidation may cover the new range without
			// knowing it: make every reader of it wait for its end.
			subs.seq.Store(subs.seq.Load() | 1)
			subs.link(sub)
		}
		sub.seq.Store(subs.seq.Load())
	} else {
		wasOdd = subs.seq.Load()&1 != 0
		// Odd, not the current value, and far from wrapping to it.
		sub.seq.Store(subs.seq.Load() - 1)
		subs.link(sub)
	}
	subs.lock.Unlock()
	if wasOdd { // reported once the spin lock is dropped: a report allocates
		krules.Emit(krules.Warn(krules.NotifierMisuse, "WARN_ON(mn_itree_is_invalidating(subscriptions)) with no invalidation active", 1))
	}
	return sub, nil
}

// Remove unsubscribes the interval: mmu_interval_notifier_remove. If an
// invalidation of it is running, Remove waits for it to end; after Remove
// returns, Invalidate is not running and will not be called again. It may
// sleep and must not be called from Invalidate: the validator reports that
// as recursive locking on the notifier map, and Remove then returns without
// waiting (in the kernel it deadlocks); the removal happens when the
// invalidation ends.
func (sub *IntervalNotifier) Remove() {
	nonblock.MightSleep()
	subs := sub.subs
	var (
		seq  uint64
		warn string // reported once the spin lock is dropped
	)
	subs.lock.Lock()
	switch {
	case sub.removed:
		warn = "mmu_interval_notifier_remove: interval notifier removed twice"
	case subs.seq.Load()&1 != 0:
		if !sub.inTree {
			// Its insertion is still deferred: just forget it.
			subs.unpostpone(sub)
		} else {
			subs.postpone(sub)
			seq = subs.seq.Load()
		}
	default:
		if !sub.inTree {
			warn = "WARN_ON(RB_EMPTY_NODE(&interval_sub->interval_tree.rb))"
		} else {
			subs.unlink(sub)
		}
	}
	twice := sub.removed
	sub.removed = true
	subs.lock.Unlock()
	if warn != "" {
		krules.Emit(krules.Warn(krules.NotifierMisuse, warn, 1))
	}
	if twice {
		return
	}
	// Waiting for the invalidation is waiting for every holder of the
	// notifier map, so taking it here orders the caller's locks before it.
	inside := holds(gfp.NotifierMap)
	gfp.NotifierMap.Acquire()
	gfp.NotifierMap.Release()
	if seq != 0 && !inside {
		subs.wq.Wait(context.Background(), func() bool { return subs.seq.Load() != seq }) //nolint:errcheck // no context to cancel
	}
	sub.mm.drop()
}

// link puts sub in the tree; unlink takes it out. The caller holds the
// lock; neither allocates.
func (subs *subscriptions) link(sub *IntervalNotifier) {
	subs.itree.Link(&sub.node)
	sub.inTree = true
}

func (subs *subscriptions) unlink(sub *IntervalNotifier) {
	subs.itree.Remove(&sub.node)
	sub.inTree = false
}

// postpone queues sub on the deferred list, to be inserted if it is not in
// the tree and removed if it is, when the last invalidation ends. The
// caller holds the lock.
func (subs *subscriptions) postpone(sub *IntervalNotifier) {
	sub.next = subs.deferred
	subs.deferred = sub
}

// unpostpone takes sub off the deferred list. The caller holds the lock.
func (subs *subscriptions) unpostpone(sub *IntervalNotifier) {
	for p := &subs.deferred; *p != nil; p = &(*p).next {
		if *p == sub {
			*p = sub.next
			sub.next = nil
			return
		}
	}
}

// ReadBegin starts a read of the interval's mappings and returns the
// sequence number to pass to ReadRetry: mmu_interval_read_begin. If an
// invalidation of the interval is running, it waits for it to end (the
// notifier map is taken and dropped first, since the wait is for holders
// of it). It does not loop: ReadRetry may already be true when it returns,
// which lets callers bound their retries.
func (sub *IntervalNotifier) ReadBegin() uint64 {
	subs := sub.subs
	subs.lock.Lock()
	seq := sub.seq.Load()
	colliding := seq == subs.seq.Load()
	subs.lock.Unlock()
	gfp.NotifierMap.Acquire()
	gfp.NotifierMap.Release()
	if colliding {
		subs.wq.Wait(context.Background(), func() bool { return subs.seq.Load() != seq }) //nolint:errcheck // no context to cancel
	}
	return seq
}

// ReadRetry reports whether an invalidation collided with the read that
// ReadBegin returned seq for: mmu_interval_read_retry. It must be called
// under the driver lock that Invalidate holds around SetSeq; that lock
// makes the answer exact. True means: drop what was read and start over.
func (sub *IntervalNotifier) ReadRetry(seq uint64) bool { return sub.seq.Load() != seq }

// CheckRetry is ReadRetry without the driver lock, for bailing out of a
// long read early: mmu_interval_check_retry. Only true is reliable.
func (sub *IntervalNotifier) CheckRetry(seq uint64) bool { return sub.seq.Load() != seq }

// SetSeq records that an invalidation is running: mmu_interval_set_seq.
// Invalidate calls it with its curSeq, under the driver lock.
func (sub *IntervalNotifier) SetSeq(curSeq uint64) { sub.seq.Store(curSeq) }

// String describes the interval: "[0x1000-0x1fff]".
func (sub *IntervalNotifier) String() string { return fmt.Sprintf("[%#x-%#x]", sub.start, sub.last) }

// itreeInvalidate is mn_itree_invalidate.
func (subs *subscriptions) itreeInvalidate(r *Range) *startResult {
	var (
		it  itIter[*IntervalNotifier]
		res *startResult
	)
	cur, n := subs.itreeInvStartRange(r, &it)
	// The tree is frozen while the sequence is odd, which it is whenever
	// there is something to walk, so the walk needs no lock.
	for ; n != nil; n = it.next() {
		sub := n.value
		if sub.ops.Invalidate(sub, r, cur) {
			continue
		}
		if r.Blockable() {
			res = res.warn(krules.Warn(krules.NotifierMisuse, fmt.Sprintf(
				"WARN_ON(mmu_notifier_range_blockable(range)): %s returned false for %s",
				methodName(sub.ops, "Invalidate"), r), 2))
			continue
		}
		subs.itreeInvEnd()
		return res.fail(ErrAgain)
	}
	return res
}

// itreeInvStartRange is mn_itree_inv_start_range: count the invalidation
// in, freeze the tree if any interval overlaps, and return the sequence
// number and the first overlapping interval.
func (subs *subscriptions) itreeInvStartRange(r *Range, it *itIter[*IntervalNotifier]) (uint64, *itNode[*IntervalNotifier]) {
	subs.lock.Lock()
	subs.active++
	n := it.first(&subs.itree, r.Start, r.End-1)
	if n != nil {
		subs.seq.Store(subs.seq.Load() | 1)
	}
	cur := subs.seq.Load()
	subs.lock.Unlock()
	return cur, n
}

// itreeInvEnd is mn_itree_inv_end: the last invalidation to end unfreezes
// the tree, applies the deferred inserts and removes, and wakes readers.
func (subs *subscriptions) itreeInvEnd() {
	subs.lock.Lock()
	subs.active--
	if subs.active != 0 || subs.seq.Load()&1 == 0 {
		subs.lock.Unlock()
		return
	}
	subs.seq.Add(1)
	for sub := subs.deferred; sub != nil; {
		next := sub.next
		sub.next = nil
		if sub.inTree {
			subs.unlink(sub)
		} else {
			subs.link(sub)
		}
		sub = next
	}
	subs.deferred = nil
	subs.lock.Unlock()
	subs.wq.WakeUp()
}

// itreeRelease is mn_itree_release: every interval gets a blockable
// RELEASE invalidation of the whole address space, and must not fail it.
func (subs *subscriptions) itreeRelease(mm *MM) {
	r := Range{MM: mm, Start: 0, End: ^uint64(0), Event: EventRelease, flags: rangeBlockable}
	var (
		it   itIter[*IntervalNotifier]
		reps []*krules.Report
	)
	cur, n := subs.itreeInvStartRange(&r, &it)
	for ; n != nil; n = it.next() {
		sub := n.value
		if !sub.ops.Invalidate(sub, &r, cur) {
			reps = append(reps, krules.Warn(krules.NotifierMisuse, fmt.Sprintf(
				"WARN_ON(!ret): %s returned false for a blockable MMU_NOTIFY_RELEASE", methodName(sub.ops, "Invalidate")), 1))
		}
	}
	subs.itreeInvEnd()
	emitAll(reps)
}
