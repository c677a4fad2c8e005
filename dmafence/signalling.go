package dmafence

import (
	"github.com/krules/krules"
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// fenceMap is dma_fence_lockdep_map, the lock map "dma_fence_map" standing
// for "this code signals fences". A kernel global: it belongs to the
// default validator, which tests reset with krulestest.ResetDefault.
var fenceMap = lockclass.NewMap("dma_fence_map")

// Map returns the lock map "dma_fence_map", for priming and assertions
// (lockclass.IsHeld(dmafence.Map()) is true inside a signalling section).
func Map() *lockclass.Map { return fenceMap }

// BeginSignalling opens a fence signalling section:
// dma_fence_begin_signalling. Code between it and EndSignalling is on the
// path that completes fences, so it must not wait for a fence, take a lock
// that is held while waiting for one, or allocate with GFP_KERNEL. It
// returns a cookie for EndSignalling: true when it did nothing because the
// goroutine is in an atomic section (which cannot wait anyway) or already
// in a signalling section (sections nest); otherwise it acquires
// dma_fence_map shared (read = 1) and returns false.
//
// Use it as
//
//	cookie := dmafence.BeginSignalling()
//	defer dmafence.EndSignalling(cookie)
//
// The section's site, the "at:" of dma_fence_map in lockdep's reports, is
// the call of BeginSignalling, as the kernel's is _RET_IP_ there. The
// acquisition is a plain shared one (trylock 0), as in v6.12; v6.13 made
// it a successful read trylock, so that a section opened under a lock no
// longer orders that lock before dma_fence_map.
//
//go:noinline
func BeginSignalling() bool {
	if t := task.Lookup(); t != nil && !opensSection(t) {
		return true
	}
	fenceMap.AcquireSharedAt(stack.ReturnPC())
	return false
}

// opensSection reports whether a goroutine with record t (nil: none) opens
// a signalling section: not in an atomic section (which cannot wait
// anyway) nor in a section already (sections nest). A goroutine without a
// record is in neither.
func opensSection(t *task.Task) bool {
	if t == nil {
		return true
	}
	if t.Preempt > 0 {
		return false
	}
	held, known := lockclass.IsHeldType(fenceMap, 1)
	return !held && known
}

// EndSignalling closes the section BeginSignalling opened with cookie:
// dma_fence_end_signalling. A false cookie while the goroutine is in no
// signalling section (the cookie of a nested or atomic section passed as
// false, or a section ended twice) releases a lock map that is not held:
// lockdep reports it as a bad unlock balance of dma_fence_map, and nothing
// else changes.
func EndSignalling(cookie bool) {
	if !cookie {
		fenceMap.Release()
	}
}

// mightWait is __dma_fence_might_wait: tell lockdep that the caller waits
// for fences, so everything it holds is ordered before dma_fence_map. Inside
// a signalling section waiting is a deadlock in the making (the signaller
// waits for a fence that may need it): that is reported, then the map is
// dropped around the exclusive acquisition as the kernel does, so the
// dependencies still get recorded.
func mightWait() {
	if t := task.Lookup(); t != nil && len(t.Lockdep.Held) != 0 {
		mightWaitHolding()
	}
}

// mightSleepWait is might_sleep() and __dma_fence_might_wait(), as a fence
// wait makes them, with one look at the goroutine's record: one that has
// none is in no section and holds nothing, so neither has anything to
// check. As nonblock.MightSleep and mightWait, each with its own lookup,
// they made the bench figure "Fence Signal+Wait" 1275 instructions instead
// of 1236 (cachegrind; AMD EPYC (Zen 3, KVM)).
func mightSleepWait() {
	if t := task.Lookup(); t != nil {
		if t.NonBlock|t.Preempt != 0 {
			nonblock.MightSleep()
		}
		if len(t.Lockdep.Held) != 0 {
			mightWaitHolding()
		}
	}
}

// mightWaitHolding is mightWait for a goroutine that holds locks. Holding
// nothing, a waiter orders nothing before dma_fence_map (and is in no
// signalling section): the acquire/release pair would record no
// dependency, so it is not made.
func mightWaitHolding() {
	held, _ := lockclass.IsHeldType(fenceMap, 1)
	if held {
		krules.Emit(krules.Warn(krules.FenceMisuse,
			"dma_fence_wait inside a dma_fence signalling section: the signaller would wait for fences", 3))
		fenceMap.Release()
	}
	fenceMap.Acquire()
	fenceMap.Release()
	if held {
		fenceMap.AcquireShared()
	}
}

// MightWait declares that the caller may wait for a fence, without
// waiting: __dma_fence_might_wait with might_sleep. Driver paths that wait
// only sometimes (a notifier that finds the buffer idle) call it so that
// the rule is checked on every run.
func MightWait() {
	nonblock.MightSleep()
	mightWait()
}
