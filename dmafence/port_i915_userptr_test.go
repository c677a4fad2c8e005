package dmafence_test

// A port of i915's userptr handling (drivers/gpu/drm/i915/gem/
// i915_gem_userptr.c and i915_gem_execbuffer.c, v6.12) to krules' public
// API. Unlike amdgpu, i915 guards the sequence with a spinning rwlock held
// only to set and to check it: the notifier bumps the sequence under the
// write lock and waits for the object's fences after dropping it, and
// execbuf publishes the request's fence first and checks the userptrs
// under the read lock afterwards, skipping the request (it completes with
// -EAGAIN, its payload not run) when one was invalidated meanwhile. The
// execbuf's i915_gem_ww_ctx is drm_exec's loop (port_drm_exec_test.go):
// the same ticket, back-off and slow lock of the contended object.

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/krules/krules"
	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
)

type i915Bugs struct {
	waitUnderNotifierLock bool // the notifier waits for the fences holding the write lock
}

// i915Device is the part of struct drm_i915_private userptrs use, with one
// engine.
type i915Device struct {
	bugs         i915Bugs
	notifierLock lockclass.RWLock // i915->mm.notifier_lock, an rwlock_t

	timeline uint64
	seqno    atomic.Uint64
	requests chan *i915Request
	finished chan struct{}
	// gate holds the engine back, for a buggy run whose report needs a
	// fence still pending when the notifier waits.
	gate <-chan struct{}

	submits, skipped, invalidations atomic.Int64
}

// i915Request is struct i915_request: its fence, the objects it uses and
// the error execbuf set on it before adding it.
type i915Request struct {
	fence *dmafence.Fence
	objs  []*i915Object
	err   error
}

// i915Object is struct drm_i915_gem_object for a userptr.
type i915Object struct {
	i915        *i915Device
	gem         *gemObject
	mm          *mmnotifier.MM
	notifier    *mmnotifier.IntervalNotifier
	start, size uint64
	notifierSeq uint64   // userptr.notifier_seq
	pvec        []uint64 // userptr.pvec: the pinned pages' frames
	running     atomic.Int32
}

func newI915Device(bugs i915Bugs, queue int, gate <-chan struct{}) *i915Device {
	i915 := &i915Device{bugs: bugs, timeline: dmafence.ContextAlloc(1),
		requests: make(chan *i915Request, queue), finished: make(chan struct{}), gate: gate}
	i915.notifierLock.Init(lockclass.WithName("&i915->mm.notifier_lock"))
	krules.Go("rcs0", i915.engine)
	return i915
}

// engine runs the requests and signals their fences, in a signalling
// section; a request execbuf marked with an error is skipped
// (i915_request_skip) and completes with it.
func (i915 *i915Device) engine() {
	defer close(i915.finished)
	<-i915.gate
	for rq := range i915.requests {
		cookie := dmafence.BeginSignalling()
		var err error
		if rq.err != nil {
			err = rq.fence.SignalErr(rq.err)
		} else {
			for _, obj := range rq.objs {
				obj.running.Add(1)
			}
			for _, obj := range rq.objs {
				obj.running.Add(-1)
			}
			err = rq.fence.Signal()
		}
		if err != nil {
			panic(err)
		}
		dmafence.EndSignalling(cookie)
	}
}

func (i915 *i915Device) close() {
	close(i915.requests)
	<-i915.finished
}

// userptrCreate is i915_gem_userptr_ioctl: the object and its interval
// notifier; no pages yet.
func (i915 *i915Device) userptrCreate(mm *mmnotifier.MM, start, size uint64) (*i915Object, error) {
	obj := &i915Object{i915: i915, gem: newGEMObject("i915_userptr"), mm: mm, start: start, size: size}
	var err error
	if obj.notifier, err = mmnotifier.InsertInterval(mm, start, size, obj); err != nil {
		return nil, err
	}
	obj.notifierSeq = ^uint64(0) - 1 // never current: the first submit pins
	return obj, nil
}

// Invalidate is i915_gem_userptr_invalidate. The kernel skips the wait
// when current has PF_EXITING (the object goes with the process); the port
// always waits, having no such flag to read.
func (obj *i915Object) Invalidate(mni *mmnotifier.IntervalNotifier, r *mmnotifier.Range, curSeq uint64) bool {
	i915 := obj.i915
	if !r.Blockable() {
		return false
	}
	i915.notifierLock.Lock()
	mni.SetSeq(curSeq)
	if i915.bugs.waitUnderNotifierLock {
		obj.waitIdle()
	}
	i915.notifierLock.Unlock()
	if !i915.bugs.waitUnderNotifierLock {
		obj.waitIdle()
	}
	i915.invalidations.Add(1)
	return true
}

// waitIdle is the notifier's dma_resv_wait_timeout(BOOKKEEP), after which
// no request may be using the pages.
func (obj *i915Object) waitIdle() {
	if left := obj.gem.resv.WaitTimeout(dmafence.UsageBookkeep, dmafence.Forever); left <= 0 {
		krules.Logf("i915: (%d) failed to wait for idle", left) // drm_err
	}
	if obj.running.Load() != 0 {
		panic("i915: GPU still using pages being invalidated")
	}
}

// submitInit is i915_gem_object_userptr_submit_init: the pages pinned
// again if the sequence moved, outside the object lock, and installed
// under it only if no invalidation came in between.
func (obj *i915Object) submitInit() error {
	seq := obj.notifier.ReadBegin()
	obj.gem.resv.Lock(nil) //nolint:errcheck // i915_gem_object_lock(obj, NULL): no ticket, no error
	if seq == obj.notifierSeq && obj.pvec != nil {
		obj.gem.resv.Unlock()
		return nil
	}
	obj.pvec = nil // i915_gem_object_userptr_unbind
	obj.gem.resv.Unlock()

	gfp.MightAlloc(gfp.Kernel) // kvmalloc_array(GFP_KERNEL) of the page vector
	pvec := make([]uint64, obj.size/gfp.PageSize)
	for i := range pvec { // pin_user_pages_fast(FOLL_WRITE)
		pfn, err := obj.mm.Fault(obj.start+uint64(i)*gfp.PageSize, true)
		if err != nil {
			return err
		}
		pvec[i] = pfn
	}
	obj.gem.resv.Lock(nil) //nolint:errcheck // as above
	defer obj.gem.resv.Unlock()
	if obj.notifier.ReadRetry(seq) {
		return mmnotifier.ErrAgain
	}
	obj.pvec, obj.notifierSeq = pvec, seq
	return nil
}

// submitDone is i915_gem_object_userptr_submit_done, under the read lock.
func (obj *i915Object) submitDone() error {
	if obj.notifier.ReadRetry(obj.notifierSeq) {
		return mmnotifier.ErrAgain
	}
	return nil
}

// execbuf is i915_gem_do_execbuffer for a batch using userptr objects.
func (i915 *i915Device) execbuf(ctx context.Context, objs []*i915Object) error {
	for _, obj := range objs { // eb_lookup_vmas
		if err := obj.submitInit(); err != nil {
			return err
		}
	}
	ww := newDRMExec(drmExecInterruptibleWait) // i915_gem_ww_ctx_init(&ww, true)
	ww.kctx = ctx
	defer ww.fini()
	for ww.cleanup() { // eb_lock_vmas, i915_gem_ww_ctx_backoff on -EDEADLK
		for _, obj := range objs {
			err := ww.prepareObj(obj.gem, 1)
			if ww.isContended() {
				break
			}
			if err != nil {
				return err
			}
		}
		if ww.isContended() {
			continue
		}
	}
	// i915_request_create: from a slab, GFP_KERNEL, under the object locks.
	gfp.MightAlloc(gfp.Kernel)
	rq := &i915Request{fence: dmafence.New(i915.timeline, i915.seqno.Add(1)), objs: objs}
	// eb_move_to_gpu: the fence published, then the userptrs checked.
	for _, obj := range ww.objects {
		obj.resv.AddFence(rq.fence, dmafence.UsageWrite)
	}
	i915.notifierLock.RLock()
	for _, obj := range objs {
		if rq.err = obj.submitDone(); rq.err != nil {
			break
		}
	}
	i915.notifierLock.RUnlock()
	i915.requests <- rq // i915_request_add: the queue has room for every request
	if rq.err != nil {
		i915.skipped.Add(1)
		return rq.err
	}
	i915.submits.Add(1)
	return nil
}

// errAgain reports whether a submission should be restarted (libdrm's
// drmIoctl on -EAGAIN).
func errAgain(err error) bool { return errors.Is(err, mmnotifier.ErrAgain) }
