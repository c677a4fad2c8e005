package dmafence_test

// A port of amdgpu's userptr handling (drivers/gpu/drm/amd/amdgpu/
// amdgpu_hmm.c, amdgpu_ttm.c, amdgpu_cs.c, v6.12) to krules' public API:
// the gfx interval notifier that bumps the sequence and waits for the BO's
// fences under adev->notifier_lock, the page collection with the
// mmu_interval_read_begin / hmm_range_fault loop, and the command
// submission that locks its BOs with drm_exec (port_drm_exec_test.go),
// then checks the userptrs under notifier_lock before it publishes the
// job's fence and pushes the job to the scheduler, whose run_job and fence
// completion run in a signalling section.

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
)

// hmmRangeDefaultTimeout is HMM_RANGE_DEFAULT_TIMEOUT (1000 ms).
const hmmRangeDefaultTimeout = time.Second

type amdgpuBugs struct {
	allocInRunJob  bool // run_job allocates with GFP_KERNEL in its signalling section
	reserveFirst   bool // invalidate_gfx takes the BO's reservation, then notifier_lock
	reserveUnderMN bool // invalidate_gfx takes the BO's reservation under notifier_lock
}

// amdgpuDevice is the part of struct amdgpu_device userptrs use, with one
// ring's scheduler.
type amdgpuDevice struct {
	bugs         amdgpuBugs
	notifierLock lockclass.Mutex // adev->notifier_lock

	ring     uint64 // the ring's fence context
	seqno    atomic.Uint64
	jobs     chan *amdgpuJob
	finished chan struct{}

	submits, eagain, invalidations atomic.Int64
}

// amdgpuBO is struct amdgpu_bo for a userptr: its GEM object (with the
// reservation), the interval notifier and the user range.
type amdgpuBO struct {
	adev        *amdgpuDevice
	gem         *gemObject
	mm          *mmnotifier.MM
	notifier    *mmnotifier.IntervalNotifier
	start, size uint64
	readonly    bool
	// running counts jobs using the BO's pages on the "GPU": an
	// invalidation that has waited for the BO's fences must find none.
	running atomic.Int32
}

// amdgpuJob is struct amdgpu_job with its scheduler fence.
type amdgpuJob struct {
	fence *dmafence.Fence
	bos   []*amdgpuBO
}

func newAMDGPUDevice(bugs amdgpuBugs, queue int) *amdgpuDevice {
	adev := &amdgpuDevice{bugs: bugs, ring: dmafence.ContextAlloc(1),
		jobs: make(chan *amdgpuJob, queue), finished: make(chan struct{})}
	adev.notifierLock.Init(lockclass.WithName("&adev->notifier_lock"))
	krules.Go("gfx_0.0.0", adev.scheduler)
	return adev
}

// scheduler is drm_sched's run_job work and the ring's fence completion:
// each job runs and its finished fence is signalled, in a signalling
// section.
func (adev *amdgpuDevice) scheduler() {
	defer close(adev.finished)
	for job := range adev.jobs {
		cookie := dmafence.BeginSignalling()
		if adev.bugs.allocInRunJob {
			// An IB allocated at run time, GFP_KERNEL: reclaim may wait
			// in an MMU notifier for this very fence.
			mem, err := gfp.Alloc(256, gfp.Kernel)
			if err == nil {
				gfp.Free(mem)
			}
		}
		for _, bo := range job.bos {
			bo.running.Add(1)
		}
		for _, bo := range job.bos {
			bo.running.Add(-1)
		}
		if err := job.fence.Signal(); err != nil {
			panic(err)
		}
		dmafence.EndSignalling(cookie)
	}
}

// close stops the scheduler once every job has run.
func (adev *amdgpuDevice) close() {
	close(adev.jobs)
	<-adev.finished
}

// userptrCreate is amdgpu_gem_userptr_ioctl without VALIDATE: a BO over the
// user range, registered with amdgpu_hmm_register (gfx ops).
func (adev *amdgpuDevice) userptrCreate(mm *mmnotifier.MM, start, size uint64) (*amdgpuBO, error) {
	bo := &amdgpuBO{adev: adev, gem: newGEMObject("userptr"), mm: mm, start: start, size: size}
	var err error
	if bo.notifier, err = mmnotifier.InsertInterval(mm, start, size, bo); err != nil {
		return nil, err
	}
	return bo, nil
}

// Invalidate is amdgpu_hmm_invalidate_gfx.
func (bo *amdgpuBO) Invalidate(mni *mmnotifier.IntervalNotifier, r *mmnotifier.Range, curSeq uint64) bool {
	adev := bo.adev
	if !r.Blockable() {
		return false
	}
	if adev.bugs.reserveFirst {
		_ = bo.gem.resv.Lock(nil) // amdgpu_bo_reserve(bo, true)
		defer bo.gem.resv.Unlock()
	}
	adev.notifierLock.Lock()
	if adev.bugs.reserveUnderMN {
		_ = bo.gem.resv.Lock(nil)
		defer bo.gem.resv.Unlock()
	}
	mni.SetSeq(curSeq)
	if left := bo.gem.resv.WaitTimeout(dmafence.UsageBookkeep, dmafence.Forever); left <= 0 {
		krules.Logf("amdgpu: (%d) failed to wait for user bo", left) // DRM_ERROR
	}
	if n := bo.running.Load(); n != 0 {
		panic("amdgpu: GPU still using pages being invalidated")
	}
	adev.notifierLock.Unlock()
	adev.invalidations.Add(1)
	return true
}

// amdgpuHMMRange is the range amdgpu_ttm_tt_get_user_pages hands to the
// CS, to be checked by amdgpu_ttm_tt_get_user_pages_done.
type amdgpuHMMRange struct {
	hmm mmnotifier.HMMRange
}

// getUserPages is amdgpu_ttm_tt_get_user_pages with
// amdgpu_hmm_range_get_pages: under mmap_lock, hmm_range_fault from a
// fresh mmu_interval_read_begin, again on -EBUSY until the timeout.
func (bo *amdgpuBO) getUserPages() (*amdgpuHMMRange, error) {
	if !bo.mm.GetNotZero() {
		return nil, mmnotifier.ErrFault // -ESRCH
	}
	defer bo.mm.Put()
	bo.mm.MmapLock().RLock()
	defer bo.mm.MmapLock().RUnlock()
	npages := int(bo.size / gfp.PageSize)
	gfp.MightAlloc(gfp.Kernel) // kvmalloc_array(GFP_KERNEL) of the PFNs
	rng := &amdgpuHMMRange{hmm: mmnotifier.HMMRange{Notifier: bo.notifier, Start: bo.start, End: bo.start + bo.size,
		PFNs: make([]uint64, npages), DefaultFlags: mmnotifier.HMMPFNReqFault}}
	if !bo.readonly {
		rng.hmm.DefaultFlags |= mmnotifier.HMMPFNReqWrite
	}
	timeout := time.Now().Add(hmmRangeDefaultTimeout)
	var err error
	for {
		rng.hmm.NotifierSeq = bo.notifier.ReadBegin()
		err = mmnotifier.HMMRangeFault(&rng.hmm)
		if errors.Is(err, mmnotifier.ErrBusy) && time.Now().Before(timeout) {
			continue
		}
		break
	}
	if errors.Is(err, mmnotifier.ErrBusy) {
		err = mmnotifier.ErrAgain
	}
	if err != nil {
		return nil, err
	}
	return rng, nil
}

// getUserPagesDone is amdgpu_ttm_tt_get_user_pages_done: whether the pages
// are still current. The CS calls it under notifier_lock.
func (bo *amdgpuBO) getUserPagesDone(rng *amdgpuHMMRange) bool {
	return !bo.notifier.ReadRetry(rng.hmm.NotifierSeq)
}

// cs is amdgpu_cs_ioctl for a BO list of userptrs: amdgpu_cs_parser_bos,
// then amdgpu_cs_submit. It returns ErrAgain when a userptr was
// invalidated after its pages were collected: libdrm's drmIoctl restarts.
func (adev *amdgpuDevice) cs(ctx context.Context, bos []*amdgpuBO) error {
	// amdgpu_cs_parser_init: the job, GFP_KERNEL.
	gfp.MightAlloc(gfp.Kernel)
	job := &amdgpuJob{bos: bos}
	// amdgpu_cs_parser_bos: the user pages first, then the reservations.
	ranges := make([]*amdgpuHMMRange, len(bos))
	for i, bo := range bos {
		var err error
		if ranges[i], err = bo.getUserPages(); err != nil {
			return err
		}
	}
	exec := newDRMExec(drmExecInterruptibleWait)
	exec.kctx = ctx
	defer exec.fini() // amdgpu_cs_parser_fini
	for exec.cleanup() {
		for _, bo := range bos {
			err := exec.prepareObj(bo.gem, 1) // one fence for the CS job
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
	// amdgpu_cs_submit: the job is armed (its fence initialised) before
	// notifier_lock, under which nothing may allocate.
	job.fence = dmafence.New(adev.ring, adev.seqno.Add(1))
	adev.notifierLock.Lock()
	valid := true
	for i, bo := range bos {
		valid = bo.getUserPagesDone(ranges[i]) && valid
	}
	if !valid {
		adev.notifierLock.Unlock()
		adev.eagain.Add(1)
		// The armed job is freed unpublished: drm_sched_job_cleanup
		// drops its fence, which nobody can be waiting for.
		return mmnotifier.ErrAgain
	}
	for _, obj := range exec.objects {
		obj.resv.AddFence(job.fence, dmafence.UsageWrite)
	}
	adev.jobs <- job // drm_sched_entity_push_job: the queue has room for every job
	adev.notifierLock.Unlock()
	adev.submits.Add(1)
	return nil
}

// unregister is amdgpu_hmm_unregister, as the BO is freed.
func (bo *amdgpuBO) unregister() { bo.notifier.Remove() }
