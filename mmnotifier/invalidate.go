package mmnotifier

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sync/atomic"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// subscriptions is struct mmu_notifier_subscriptions: an address space's
// notifier list and interval tree, made by the first registration.
type subscriptions struct {
	// list is the notifier list, newest first; readers load it inside a
	// read section, writers replace it under lock (an RCU hlist).
	list     atomic.Pointer[[]*Subscription]
	hasItree atomic.Bool

	lock lockclass.SpinLock // &subscriptions->lock
	// seq is invalidate_seq: even when idle or partially excluded, odd
	// while an invalidation overlaps an interval (the tree is then frozen).
	// Written under lock, read without it by waiters.
	seq    atomic.Uint64
	active int // active_invalidate_ranges (lock)
	itree  intervalTree[*IntervalNotifier]
	// deferred lists the inserts and removes that arrived while the tree
	// was frozen, linked through the notifiers; the last invalidation to
	// end applies them (lock).
	deferred *IntervalNotifier
	wq       nonblock.WaitQueue
}

func newSubscriptions() *subscriptions {
	s := &subscriptions{}
	s.lock.Init(lockclass.WithName("&subscriptions->lock"))
	empty := []*Subscription{}
	s.list.Store(&empty)
	s.seq.Store(2)
	return s
}

// InvalidateRangeStart tells every notifier of r.MM that r is about to
// change: mmu_notifier_invalidate_range_start, for code that changes an
// address space's mappings. It may sleep (might_sleep is checked first),
// marks r blockable and ignores failures, which are reported (a notifier
// may only fail in a non-blockable range). The notifier lock map is held
// across the callbacks even when r.MM has no notifiers, so the validator
// orders every lock the caller holds before every lock a callback takes.
//
// The caller must hold r.MM's mmap_lock (read or write) from here to the
// matching InvalidateRangeEnd, as the kernel's callers hold mmap_lock or
// the rmap locks: that is what keeps a registration from falling between
// a start and its end.
//
// A range with Start >= End is reported and reaches no notifier, as
// munmap refuses a zero length; its InvalidateRangeEnd does nothing.
//
//go:noinline
func InvalidateRangeStart(r *Range) {
	nonblock.MightSleep()
	if !r.valid("mmu_notifier_invalidate_range_start") {
		r.flags |= rangeRefused
		return
	}
	gfp.NotifierMap.Acquire()
	r.flags |= rangeStarted
	var reps []*krules.Report
	if subs := r.MM.subs.Load(); subs != nil {
		r.flags |= rangeBlockable
		reps, _ = subs.invalidateStart(r)
	}
	gfp.NotifierMap.Release()
	emitAll(reps)
}

// InvalidateRangeStartNonblock is InvalidateRangeStart for a caller that
// must not sleep, the OOM reaper: mmu_notifier_invalidate_range_start_nonblock.
// It clears r's blockable flag, so list notifiers run inside non-block
// sections, and returns ErrAgain if a notifier could not proceed without
// sleeping. Then the caller must leave the range alone and must not call
// InvalidateRangeEnd; the bookkeeping of the start is already undone. A
// range with Start >= End is reported and returns ErrInvalid.
//
//go:noinline
func InvalidateRangeStartNonblock(r *Range) error {
	if !r.valid("mmu_notifier_invalidate_range_start_nonblock") {
		return ErrInvalid
	}
	gfp.NotifierMap.Acquire()
	var (
		err  error
		reps []*krules.Report
	)
	if subs := r.MM.subs.Load(); subs != nil {
		r.flags &^= rangeBlockable
		reps, err = subs.invalidateStart(r)
	}
	if err == nil {
		r.flags |= rangeStarted
	}
	gfp.NotifierMap.Release()
	emitAll(reps)
	return err
}

// valid reports whether r may be invalidated, and reports a range that
// ends where or before it starts.
func (r *Range) valid(fn string) bool {
	if r.Start < r.End {
		return true
	}
	krules.Emit(krules.Warn(krules.NotifierMisuse, fmt.Sprintf(
		"WARN_ON(range->start >= range->end): %s of %s", fn, r), 2))
	return false
}

// InvalidateRangeEnd tells the notifiers that r has changed:
// mmu_notifier_invalidate_range_end. It may sleep if r is blockable. An
// end whose start did not run (never called, ended already, or failed
// with ErrAgain) is reported and does nothing, so the interval tree's
// sequence stays balanced and no ReadBegin waits for it.
//
//go:noinline
func InvalidateRangeEnd(r *Range) {
	switch {
	case r.flags&rangeRefused != 0: // reported by its start
		r.flags &^= rangeRefused
		return
	case r.flags&rangeStarted == 0:
		krules.Emit(krules.Warn(krules.NotifierMisuse,
			"mmu_notifier_invalidate_range_end without a matching start: "+r.String(), 1))
		return
	}
	r.flags &^= rangeStarted
	if r.Blockable() {
		nonblock.MightSleep()
	}
	subs := r.MM.subs.Load()
	if subs == nil {
		return
	}
	gfp.NotifierMap.Acquire()
	if subs.hasItree.Load() {
		subs.itreeInvEnd()
	}
	if list := *subs.list.Load(); len(list) != 0 {
		hlistEnd(r, list)
	}
	gfp.NotifierMap.Release()
}

// invalidateStart is __mmu_notifier_invalidate_range_start. The reports it
// returns are emitted by the caller once the notifier map is dropped.
func (subs *subscriptions) invalidateStart(r *Range) ([]*krules.Report, error) {
	var reps []*krules.Report
	itree := subs.hasItree.Load()
	if itree {
		var err error
		if reps, err = subs.itreeInvalidate(r); err != nil {
			return reps, err
		}
	}
	list := *subs.list.Load()
	if len(list) == 0 {
		return reps, nil
	}
	reps, err := hlistStart(r, list, reps)
	if err != nil && itree {
		// The kernel leaves the interval tree's start in place here and,
		// since the caller must not call end, the address space excluded
		// for good; undo it, as the -EAGAIN contract says happens.
		subs.itreeInvEnd()
	}
	return reps, err
}

// hlistStart is mn_hlist_invalidate_range_start.
func hlistStart(r *Range, list []*Subscription, reps []*krules.Report) ([]*krules.Report, error) {
	var err error
	tok := srcu.walkLock()
	if r.Blockable() {
		for _, s := range list {
			if e := s.n.InvalidateRangeStart(r); e != nil {
				err = e
				reps = s.failed(r, e, reps)
			}
		}
	} else {
		for _, s := range list {
			nonblock.Start()
			e := s.n.InvalidateRangeStart(r)
			nonblock.End()
			if e != nil {
				err = e
				reps = s.failed(r, e, reps)
			}
		}
	}
	if err != nil {
		// Every notifier that can fail has no end, so those with an end
		// are the ones whose start succeeded: they expect their end.
		for _, s := range list {
			if s.end != nil {
				s.end.InvalidateRangeEnd(r)
			}
		}
	}
	srcu.readUnlock(tok)
	return reps, err
}

// hlistEnd is mn_hlist_invalidate_end.
func hlistEnd(r *Range, list []*Subscription) {
	tok := srcu.walkLock()
	if r.Blockable() {
		for _, s := range list {
			if s.end != nil {
				s.end.InvalidateRangeEnd(r)
			}
		}
	} else {
		for _, s := range list {
			if s.end != nil {
				nonblock.Start()
				s.end.InvalidateRangeEnd(r)
				nonblock.End()
			}
		}
	}
	srcu.readUnlock(tok)
}

// failed logs a failed start as the kernel does and appends the WARNINGs
// it deserves: a failure in a blockable range or other than ErrAgain, and
// a notifier that can fail but has an end callback.
func (s *Subscription) failed(r *Range, err error, reps []*krules.Report) []*krules.Report {
	fn := methodName(s.n, "InvalidateRangeStart")
	non := ""
	if !r.Blockable() {
		non = "non-"
	}
	code := fmt.Sprintf("%q", err.Error())
	if n, ok := errnoOf(err); ok {
		code = fmt.Sprint(n)
	}
	krules.Logf("%s callback failed with %s in %sblockable context.", fn, code, non)
	if r.Blockable() || !errors.Is(err, ErrAgain) {
		reps = append(reps, krules.Warn(krules.NotifierMisuse, fmt.Sprintf(
			"WARN_ON(mmu_notifier_range_blockable(range) || _ret != -EAGAIN): %s returned %s for %s", fn, code, r), 2))
	}
	if s.end != nil {
		reps = append(reps, krules.Warn(krules.NotifierMisuse, fmt.Sprintf(
			"WARN_ON(ops->invalidate_range_end): %s can fail, but its notifier has an end callback, "+
				"which cannot know that the start failed", fn), 2))
	}
	return reps
}

// methodName returns the %pS of a notifier's method: "pkg.(*T).M+0x0".
func methodName(n any, method string) string {
	if c, ok := n.(interface{ callback() uintptr }); ok && method == "InvalidateRangeStart" {
		if pc := c.callback(); pc != 0 {
			return stack.ShortFunc(runtimeFuncName(pc)) + "+0x0"
		}
	}
	if m, ok := reflect.TypeOf(n).MethodByName(method); ok {
		return stack.ShortFunc(runtimeFuncName(m.Func.Pointer())) + "+0x0"
	}
	return fmt.Sprintf("%T.%s", n, method)
}

func runtimeFuncName(pc uintptr) string {
	if f := runtime.FuncForPC(pc); f != nil {
		return f.Name()
	}
	return fmt.Sprintf("0x%x", pc)
}

func emitAll(reps []*krules.Report) {
	for _, r := range reps {
		krules.Emit(r)
	}
}
