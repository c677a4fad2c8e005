package dmafence_test

// A port of amdgpu's HSA (KFD) userptr handling (amdgpu_hmm.c's
// amdgpu_hmm_invalidate_hsa and amdgpu_amdkfd_gpuvm.c's
// amdgpu_amdkfd_evict_userptr and restore_userptr_worker, v6.12) to
// krules' public API. Unlike gfx, the notifier waits for nothing: under
// process_info->notifier_lock it bumps the sequence, marks the BO invalid
// and, on the first eviction, stops the process's user-mode queues and
// schedules the restore worker. The worker collects the pages again outside
// notifier_lock, revalidates the BOs under their reservations (drm_exec),
// and resumes the queues only if, under notifier_lock, nothing was
// invalidated meanwhile.

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
)

// amdgpuUserptrRestoreDelay is AMDGPU_USERPTR_RESTORE_DELAY_MS (1 ms).
const amdgpuUserptrRestoreDelay = time.Millisecond

type kfdBugs struct {
	pagesUnderNotifierLock bool // update_invalid_user_pages keeps notifier_lock across get_user_pages
}

// kfdProcessInfo is struct amdkfd_process_info.
type kfdProcessInfo struct {
	bugs         kfdBugs
	lock         lockclass.Mutex // process_info->lock
	notifierLock lockclass.Mutex // process_info->notifier_lock
	mm           *mmnotifier.MM
	mems         []*kgdMem
	evictedBos   uint32
	queuesActive bool // the user-mode queues run (kgd2kfd_quiesce_mm / _resume_mm)

	restore  chan struct{} // restore_userptr_work, pending at most once
	stop     chan struct{}
	finished chan struct{}

	evictions, restores, reschedules atomic.Int64
	warnings                         atomic.Int64 // the worker's WARNs: the port is broken
}

// kgdMem is struct kgd_mem for a userptr BO.
type kgdMem struct {
	pinfo    *kfdProcessInfo
	bo       *amdgpuBO
	invalid  uint32          // mem->invalid
	inval    bool            // on userptr_inval_list (else userptr_valid_list)
	rng      *amdgpuHMMRange // mem->range
	mappedAt uint64          // the sequence the GPU mapping was built from
}

func newKFDProcess(mm *mmnotifier.MM, bugs kfdBugs) *kfdProcessInfo {
	p := &kfdProcessInfo{bugs: bugs, mm: mm, queuesActive: true,
		restore: make(chan struct{}, 1), stop: make(chan struct{}), finished: make(chan struct{})}
	p.lock.Init(lockclass.WithName("&process_info->lock"))
	p.notifierLock.Init(lockclass.WithName("&process_info->notifier_lock"))
	krules.Go("kworker/u4:2", p.restoreWorker)
	return p
}

// allocUserptr is amdgpu_amdkfd_gpuvm_alloc_memory_of_gpu for a userptr
// with init_user_pages: registered with the HSA ops, pages collected, and
// mapped.
func (p *kfdProcessInfo) allocUserptr(adev *amdgpuDevice, start, size uint64) (*kgdMem, error) {
	mem := &kgdMem{pinfo: p}
	mem.bo = &amdgpuBO{adev: adev, gem: newGEMObject("kfd_userptr"), mm: p.mm, start: start, size: size}
	var err error
	if mem.bo.notifier, err = mmnotifier.InsertInterval(p.mm, start, size, mem); err != nil {
		return nil, err
	}
	p.lock.Lock()
	defer p.lock.Unlock()
	rng, err := mem.bo.getUserPages()
	if err != nil {
		mem.bo.unregister()
		return nil, err
	}
	// Invalidated since the pages were collected, the BO is invalid
	// already (the callback counted it), and the restore worker maps it.
	p.notifierLock.Lock()
	mem.mappedAt = rng.hmm.NotifierSeq
	p.mems = append(p.mems, mem)
	p.notifierLock.Unlock()
	return mem, nil
}

// Invalidate is amdgpu_hmm_invalidate_hsa with amdgpu_amdkfd_evict_userptr.
func (mem *kgdMem) Invalidate(mni *mmnotifier.IntervalNotifier, r *mmnotifier.Range, curSeq uint64) bool {
	p := mem.pinfo
	if !r.Blockable() {
		return false
	}
	p.notifierLock.Lock()
	mni.SetSeq(curSeq)
	mem.invalid++
	p.evictedBos++
	if p.evictedBos == 1 {
		p.queuesActive = false // kgd2kfd_quiesce_mm: first eviction stops the queues
		p.schedule()
	}
	p.notifierLock.Unlock()
	p.evictions.Add(1)
	return true
}

// schedule is schedule_delayed_work of restore_userptr_work: a no-op when
// it is pending already.
func (p *kfdProcessInfo) schedule() {
	select {
	case p.restore <- struct{}{}:
	default:
	}
}

// restoreWorker runs restore_userptr_work each time it is scheduled.
func (p *kfdProcessInfo) restoreWorker() {
	defer close(p.finished)
	for {
		select {
		case <-p.restore:
		case <-p.stop:
			return
		}
		time.Sleep(amdgpuUserptrRestoreDelay)
		p.restoreUserptr()
	}
}

// restoreUserptr is amdgpu_amdkfd_restore_userptr_worker.
func (p *kfdProcessInfo) restoreUserptr() {
	p.notifierLock.Lock()
	evicted := p.evictedBos
	p.notifierLock.Unlock()
	if evicted == 0 {
		return
	}
	if !p.mm.GetNotZero() { // get_task_mm
		return
	}
	defer p.mm.Put()
	p.lock.Lock()
	if p.updateInvalidUserPages() == nil && p.validateInvalidUserPages() == nil {
		p.notifierLock.Lock()
		if p.evictedBos == evicted {
			if p.confirmValidUserPagesLocked() != nil {
				p.warn("User pages unexpectedly invalid")
			} else {
				p.evictedBos, evicted = 0, 0
				p.queuesActive = true // kgd2kfd_resume_mm
				p.restores.Add(1)
			}
		}
		p.notifierLock.Unlock()
	}
	p.lock.Unlock()
	if evicted != 0 {
		p.reschedules.Add(1)
		p.schedule()
	}
}

// warn is the worker's WARN(): it never fires in a correct port.
func (p *kfdProcessInfo) warn(msg string) {
	p.warnings.Add(1)
	krules.Logf("WARNING: amdgpu: %s", msg)
}

// updateInvalidUserPages is update_invalid_user_pages: each invalidated
// BO's pages collected again, outside notifier_lock, and marked valid only
// if not invalidated meanwhile.
func (p *kfdProcessInfo) updateInvalidUserPages() error {
	p.notifierLock.Lock()
	defer p.notifierLock.Unlock()
	for _, mem := range p.mems {
		if mem.invalid != 0 {
			mem.inval = true
		}
	}
	for _, mem := range p.mems {
		invalid := mem.invalid
		if !mem.inval || invalid == 0 {
			continue
		}
		mem.rng = nil // amdgpu_ttm_tt_discard_user_pages
		// Getting user pages (hmm_range_fault) must happen outside the
		// notifier lock.
		if !p.bugs.pagesUnderNotifierLock {
			p.notifierLock.Unlock()
		}
		rng, err := mem.bo.getUserPages()
		if !p.bugs.pagesUnderNotifierLock {
			p.notifierLock.Lock()
		}
		switch {
		case errors.Is(err, mmnotifier.ErrFault):
			// -EFAULT is success: a GPU access will fault later.
		case err != nil:
			return err // -EBUSY, -EPERM...: the restore is rescheduled
		}
		mem.rng = rng
		if mem.invalid != invalid {
			return mmnotifier.ErrAgain
		}
		if mem.rng != nil {
			mem.invalid = 0
		}
	}
	return nil
}

// validateInvalidUserPages is validate_invalid_user_pages: the BOs of the
// invalid list locked with drm_exec, one fence slot each, and their GPU
// mappings updated from the new pages.
func (p *kfdProcessInfo) validateInvalidUserPages() error {
	exec := newDRMExec(0)
	defer exec.fini()
	for exec.cleanup() {
		for _, mem := range p.mems {
			if !mem.inval {
				continue
			}
			err := exec.prepareObj(mem.bo.gem, 1)
			if exec.isContended() {
				break
			}
			if err != nil {
				return err
			}
		}
		if exec.isContended() {
			continue
		}
	}
	for _, mem := range p.mems {
		if mem.inval && mem.rng != nil {
			mem.mappedAt = mem.rng.hmm.NotifierSeq // update_gpuvm_pte
		}
	}
	return nil
}

// confirmValidUserPagesLocked is confirm_valid_user_pages_locked.
func (p *kfdProcessInfo) confirmValidUserPagesLocked() error {
	lockclass.AssertHeld(&p.notifierLock)
	var err error
	for _, mem := range p.mems {
		if !mem.inval || mem.rng == nil {
			continue
		}
		valid := mem.bo.getUserPagesDone(mem.rng)
		mem.rng = nil
		switch {
		case !valid:
			if mem.invalid == 0 {
				p.warn("Invalid BO not marked invalid")
			}
			err = mmnotifier.ErrAgain
		case mem.invalid != 0:
			p.warn("Valid BO is marked invalid")
			err = mmnotifier.ErrAgain
		default:
			mem.inval = false
		}
	}
	return err
}

// queueAccess is a user-mode queue touching the process's userptrs: it may
// run only while the queues are active, and then every mapping must be
// current. It reports whether the queues ran.
func (p *kfdProcessInfo) queueAccess() bool {
	p.notifierLock.Lock()
	defer p.notifierLock.Unlock()
	if !p.queuesActive {
		return false
	}
	for _, mem := range p.mems {
		if mem.invalid != 0 || mem.inval || mem.bo.notifier.ReadRetry(mem.mappedAt) {
			p.warn("user queue running on stale pages")
		}
	}
	return true
}

// close stops the restore worker and unregisters the BOs.
func (p *kfdProcessInfo) close() {
	close(p.stop)
	<-p.finished
	for _, mem := range p.mems {
		mem.bo.unregister()
	}
}
