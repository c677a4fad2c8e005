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
	if r.Start >= r.End {
		nonblock.MightSleep()
		r.flags |= rangeRefused
		r.warnInvalid("mmu_notifier_invalidate_range_start")
		return
	}
	gfp.NotifierMap.AcquireMightSleep()
	r.flags |= rangeStarted
	var res *startResult
	if subs := r.MM.subs.Load(); subs != nil {
		r.flags |= rangeBlockable
		// invalidateStart's list-only case inline: one call less, 817 -> 793
		// instructions an invalidation with 1 notifier (cachegrind, AMD
		// EPYC (Zen 3, KVM)).
		if subs.hasItree.Load() {
			res = subs.invalidateStart(r)
		} else if list := *subs.list.Load(); len(list) != 0 {
			res = hlistStart(r, list, nil)
		}
	}
	gfp.NotifierMap.Release()
	res.emit()
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
	if r.Start >= r.End {
		r.warnInvalid("mmu_notifier_invalidate_range_start_nonblock")
		return ErrInvalid
	}
	gfp.NotifierMap.Acquire()
	var res *startResult
	if subs := r.MM.subs.Load(); subs != nil {
		r.flags &^= rangeBlockable
		res = subs.invalidateStart(r)
	}
	err := res.error()
	if err == nil {
		r.flags |= rangeStarted
	}
	gfp.NotifierMap.Release()
	res.emit()
	return err
}

// warnInvalid reports a range that ends where or before it starts, which
// fn refuses. It is out of line: the starts test the range themselves.
//
//go:noinline
func (r *Range) warnInvalid(fn string) {
	krules.Emit(krules.Warn(krules.NotifierMisuse, fmt.Sprintf(
		"WARN_ON(range->start >= range->end): %s of %s", fn, r), 2))
}

// InvalidateRangeEnd tells the notifiers that r has changed:
// mmu_notifier_invalidate_range_end. It may sleep if r is blockable. An
// end whose start did not run (never called, ended already, or failed
// with ErrAgain) is reported and does nothing, so the interval tree's
// sequence stays balanced and no ReadBegin waits for it.
//
//go:noinline
func InvalidateRangeEnd(r *Range) {
	if r.flags&(rangeRefused|rangeStarted) != rangeStarted {
		r.endUnstarted()
		return
	}
	r.flags &^= rangeStarted
	subs := r.MM.subs.Load()
	switch {
	case subs == nil:
		nonblock.MightSleepIf(r.Blockable())
		return
	case r.Blockable():
		gfp.NotifierMap.AcquireMightSleep()
	default:
		gfp.NotifierMap.Acquire()
	}
	if subs.hasItree.Load() {
		subs.itreeInvEnd()
	}
	if list := *subs.list.Load(); len(list) != 0 {
		// mn_hlist_invalidate_end, inline (its only caller): one call
		// less, 805 -> 793 instructions an invalidation with 1 notifier
		// (cachegrind, AMD EPYC (Zen 3, KVM)).
		c := srcu.walkLock()
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
		srcu.walkUnlock(c)
	}
	gfp.NotifierMap.Release()
}

// endUnstarted is InvalidateRangeEnd of a range whose start refused it
// (reported then) or did not run (reported now).
//
//go:noinline
func (r *Range) endUnstarted() {
	if r.flags&rangeRefused != 0 {
		r.flags &^= rangeRefused
		return
	}
	krules.Emit(krules.Warn(krules.NotifierMisuse,
		"mmu_notifier_invalidate_range_end without a matching start: "+r.String(), 2))
}

// startResult is what a start must report once the notifier map is
// dropped, and its error if it failed. A start that neither fails nor
// warns has none (nil), so the walks carry one pointer across their
// callbacks rather than a slice and an error, and allocate nothing. With
// the SRCU counter pointer and the inlined walks (see srcu.go and the
// starts and end above), an invalidation with 1 notifier went from 931 to
// 788 instructions (cachegrind, AMD EPYC (Zen 3, KVM); the 2 direct calls
// of the callbacks are 105; the notifier map's two acquisitions and
// releases were about 430 of the 788, and are about 350 of the 712 an
// invalidation costs since Map.Acquire reads the id and site in one call;
// with might_sleep folded into the acquisitions (Map.AcquireMightSleep)
// an invalidation is 604).
type startResult struct {
	err  error
	reps []*krules.Report
}

// warn adds a report, making res if there is none yet.
func (res *startResult) warn(rep *krules.Report) *startResult {
	if res == nil {
		res = &startResult{}
	}
	res.reps = append(res.reps, rep)
	return res
}

// fail records that the start failed with err.
func (res *startResult) fail(err error) *startResult {
	if res == nil {
		res = &startResult{}
	}
	res.err = err
	return res
}

// error returns the error the start failed with, or nil.
func (res *startResult) error() error {
	if res == nil {
		return nil
	}
	return res.err
}

// emit emits the reports, in order.
func (res *startResult) emit() {
	if res != nil {
		emitAll(res.reps)
	}
}

// invalidateStart is __mmu_notifier_invalidate_range_start.
func (subs *subscriptions) invalidateStart(r *Range) *startResult {
	var res *startResult
	itree := subs.hasItree.Load()
	if itree {
		if res = subs.itreeInvalidate(r); res.error() != nil {
			return res
		}
	}
	list := *subs.list.Load()
	if len(list) == 0 {
		return res
	}
	if res = hlistStart(r, list, res); res.error() != nil && itree {
		// The kernel leaves the interval tree's start in place here and,
		// since the caller must not call end, the address space excluded
		// for good; undo it, as the -EAGAIN contract says happens.
		subs.itreeInvEnd()
	}
	return res
}

// hlistStart is mn_hlist_invalidate_range_start. res holds what the
// interval notifiers reported; it has no error.
func hlistStart(r *Range, list []*Subscription, res *startResult) *startResult {
	c := srcu.walkLock()
	if r.Blockable() {
		for _, s := range list {
			if e := s.n.InvalidateRangeStart(r); e != nil {
				res = s.failed(r, e, res)
			}
		}
	} else {
		for _, s := range list {
			nonblock.Start()
			e := s.n.InvalidateRangeStart(r)
			nonblock.End()
			if e != nil {
				res = s.failed(r, e, res)
			}
		}
	}
	if res.error() != nil {
		// Every notifier that can fail has no end, so those with an end
		// are the ones whose start succeeded: they expect their end.
		for _, s := range list {
			if s.end != nil {
				s.end.InvalidateRangeEnd(r)
			}
		}
	}
	srcu.walkUnlock(c)
	return res
}

// failed logs a failed start as the kernel does, records the failure in res
// and adds the WARNINGs it deserves: a failure in a blockable range or other
// than ErrAgain, and a notifier that can fail but has an end callback.
func (s *Subscription) failed(r *Range, err error, res *startResult) *startResult {
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
	res = res.fail(err)
	if r.Blockable() || !errors.Is(err, ErrAgain) {
		res = res.warn(krules.Warn(krules.NotifierMisuse, fmt.Sprintf(
			"WARN_ON(mmu_notifier_range_blockable(range) || _ret != -EAGAIN): %s returned %s for %s", fn, code, r), 2))
	}
	if s.end != nil {
		res = res.warn(krules.Warn(krules.NotifierMisuse, fmt.Sprintf(
			"WARN_ON(ops->invalidate_range_end): %s can fail, but its notifier has an end callback, "+
				"which cannot know that the start failed", fn), 2))
	}
	return res
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
