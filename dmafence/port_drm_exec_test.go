package dmafence_test

// A port of drm_exec (drivers/gpu/drm/drm_exec.c, include/drm/drm_exec.h,
// v6.12) to krules' public API: the retry loop that locks a set of GEM
// objects' reservation objects in one ww ticket, backs off on contention by
// unlocking everything, and takes the contended object first, with the slow
// path, on the next pass.
//
// drm_exec_until_all_locked and drm_exec_retry_on_contention are a for
// statement and a continue in Go:
//
//	exec := newDRMExec(0)
//	for exec.cleanup() {
//		err := exec.prepareObj(a, 1)
//		if exec.isContended() {
//			continue
//		}
//		...
//	}
//	defer exec.fini()

import (
	"context"
	"errors"

	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
)

const (
	drmExecInterruptibleWait = 1 << 0 // DRM_EXEC_INTERRUPTIBLE_WAIT
	drmExecIgnoreDuplicates  = 1 << 1 // DRM_EXEC_IGNORE_DUPLICATES
)

// gemObject is the part of struct drm_gem_object drm_exec uses: its
// reservation object. The rest is the test's: who holds it, to check
// mutual exclusion.
type gemObject struct {
	name string
	resv *dmafence.Resv
	// holder is the exec that holds resv, set by the test after locking;
	// writes, a plain counter, proves the same under -race.
	holder *drmExec
	writes int
}

func newGEMObject(name string) *gemObject { return &gemObject{name: name, resv: dmafence.NewResv()} }

// drmExecDummy is DRM_EXEC_DUMMY: contended before the first cleanup,
// which then initialises the ticket.
var drmExecDummy = &gemObject{name: "DRM_EXEC_DUMMY"}

type drmExecBugs struct {
	keepLocksOnContention bool // cleanup does not unlock before the slow lock
}

// drmExec is struct drm_exec.
type drmExec struct {
	bugs      drmExecBugs
	flags     uint32
	kctx      context.Context // the ioctl's, for DRM_EXEC_INTERRUPTIBLE_WAIT
	ticketOpt []lockclass.WWCtxOption
	ticket    lockclass.WWAcquireCtx
	objects   []*gemObject
	contended *gemObject
	prelocked *gemObject

	backoffs int
}

// newDRMExec is drm_exec_init(exec, flags, 0): the object table is a
// kvmalloc'ed page of pointers. ticketOpts stand for the kernel's
// CONFIG_DEBUG_WW_MUTEX_SLOWPATH, which krules sets per ticket.
func newDRMExec(flags uint32, ticketOpts ...lockclass.WWCtxOption) *drmExec {
	gfp.MightAlloc(gfp.Kernel) // kvmalloc_array(GFP_KERNEL)
	return &drmExec{flags: flags, kctx: context.Background(), ticketOpt: ticketOpts,
		objects: make([]*gemObject, 0, gfp.PageSize/8), contended: drmExecDummy}
}

// unlockAll is drm_exec_unlock_all: in reverse locking order.
func (e *drmExec) unlockAll() {
	for i := len(e.objects) - 1; i >= 0; i-- {
		e.objects[i].resv.Unlock()
	}
	e.prelocked = nil
}

// fini is drm_exec_fini.
func (e *drmExec) fini() {
	e.unlockAll()
	e.objects = e.objects[:0]
	if e.contended != drmExecDummy {
		e.ticket.Fini()
	}
}

// cleanup is drm_exec_cleanup, the condition of drm_exec_until_all_locked:
// false once a pass locked everything (the acquire phase is done); true to
// run a pass, the first after initialising the ticket, later ones after
// unlocking everything the contended pass took.
func (e *drmExec) cleanup() bool {
	switch e.contended {
	case nil:
		e.ticket.Done()
		return false
	case drmExecDummy:
		e.contended = nil
		e.ticket.Init(dmafence.ReservationClass, e.ticketOpt...)
		return true
	}
	e.backoffs++
	if !e.bugs.keepLocksOnContention {
		e.unlockAll()
		e.objects = e.objects[:0]
	}
	return true
}

// isContended is drm_exec_is_contended, drm_exec_retry_on_contention's test.
func (e *drmExec) isContended() bool { return e.contended != nil }

// objLocked is drm_exec_obj_locked: the table grows by a page with
// kvrealloc(GFP_KERNEL), under the reservation locks.
func (e *drmExec) objLocked(obj *gemObject) {
	if len(e.objects) == cap(e.objects) {
		gfp.MightAlloc(gfp.Kernel)
	}
	e.objects = append(e.objects, obj)
}

// lockContended is drm_exec_lock_contended: the object the last pass
// backed off for is locked first, with the slow path.
func (e *drmExec) lockContended() error {
	obj := e.contended
	if obj == nil {
		return nil
	}
	e.contended = nil
	if e.flags&drmExecInterruptibleWait != 0 {
		if err := obj.resv.LockSlowKillable(e.kctx, &e.ticket); err != nil {
			return err
		}
	} else {
		obj.resv.LockSlow(&e.ticket)
	}
	e.objLocked(obj)
	e.prelocked = obj
	return nil
}

// lockObj is drm_exec_lock_obj: ErrDeadlock on contention (the caller
// retries), ErrAlready for an object locked twice unless
// DRM_EXEC_IGNORE_DUPLICATES.
func (e *drmExec) lockObj(obj *gemObject) error {
	if err := e.lockContended(); err != nil {
		return err
	}
	if e.prelocked == obj {
		e.prelocked = nil
		return nil
	}
	var err error
	if e.flags&drmExecInterruptibleWait != 0 {
		err = obj.resv.LockKillable(e.kctx, &e.ticket)
	} else {
		err = obj.resv.Lock(&e.ticket)
	}
	switch {
	case errors.Is(err, lockclass.ErrDeadlock):
		e.contended = obj
		return err
	case errors.Is(err, lockclass.ErrAlready) && e.flags&drmExecIgnoreDuplicates != 0:
		return nil
	case err != nil:
		return err
	}
	e.objLocked(obj)
	return nil
}

// unlockObj is drm_exec_unlock_obj.
func (e *drmExec) unlockObj(obj *gemObject) {
	for i := len(e.objects) - 1; i >= 0; i-- {
		if e.objects[i] == obj {
			obj.resv.Unlock()
			e.objects = append(e.objects[:i], e.objects[i+1:]...)
			return
		}
	}
}

// prepareObj is drm_exec_prepare_obj: lock, then reserve fence slots.
func (e *drmExec) prepareObj(obj *gemObject, numFences int) error {
	if err := e.lockObj(obj); err != nil {
		return err
	}
	if err := obj.resv.ReserveFences(numFences); err != nil {
		e.unlockObj(obj)
		return err
	}
	return nil
}

// prepareArray is drm_exec_prepare_array.
func (e *drmExec) prepareArray(objs []*gemObject, numFences int) error {
	for _, obj := range objs {
		if err := e.prepareObj(obj, numFences); err != nil {
			return err
		}
	}
	return nil
}
