package mmnotifier_test

// A port of xe's userptr handling (drivers/gpu/drm/xe/xe_vm.c, xe_hmm.c,
// xe_exec.c, v6.12) to krules' public API: the interval notifier that
// bumps the sequence under the VM's userptr notifier_lock and waits for the
// VM's fences after dropping it, the repin under vm->lock held for writing,
// and the exec ioctl's check of the userptrs under notifier_lock before it
// publishes the job's fence.

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
)

type xeBugs struct {
	jobUnderNotifierLock bool // xe_sched_job_create (GFP_KERNEL) under notifier_lock
	waitInRunJob         bool // run_job waits for the previous job in its signalling section
}

// xeVM is the part of struct xe_vm userptrs use.
type xeVM struct {
	bugs xeBugs
	mm   *mmnotifier.MM
	lock lockclass.RWSem // vm->lock
	resv *dmafence.Resv  // xe_vm_resv(vm)

	notifierLock    lockclass.RWSem    // vm->userptr.notifier_lock
	invalidatedLock lockclass.SpinLock // vm->userptr.invalidated_lock
	invalidated     []*xeUserptrVMA    // vm->userptr.invalidated
	repin           []*xeUserptrVMA    // vm->userptr.repin_list

	timeline uint64
	seqno    atomic.Uint64
	last     *dmafence.Fence // the last job's fence; under resv
	jobs     chan *xeJob
	done     chan struct{}

	execs, retries, repins atomic.Int64
}

type xeJob struct {
	fence *dmafence.Fence
	prev  *dmafence.Fence
	mem   []byte
}

// xeUserptrVMA is struct xe_userptr_vma.
type xeUserptrVMA struct {
	vm          *xeVM
	start, size uint64
	notifier    *mmnotifier.IntervalNotifier
	notifierSeq uint64 // userptr->notifier_seq: the sequence the pages were pinned at
	initialBind bool
	list        int // which list invalidate_link is on: 0 none, listInvalidated, listRepin
}

const (
	listInvalidated = 1
	listRepin       = 2
)

// move is list_move_tail of invalidate_link; the caller holds
// invalidated_lock.
func (vm *xeVM) move(uvma *xeUserptrVMA, to int) {
	del := func(l []*xeUserptrVMA) []*xeUserptrVMA {
		for i, u := range l {
			if u == uvma {
				return append(l[:i], l[i+1:]...)
			}
		}
		return l
	}
	switch uvma.list {
	case listInvalidated:
		vm.invalidated = del(vm.invalidated)
	case listRepin:
		vm.repin = del(vm.repin)
	}
	uvma.list = to
	switch to {
	case listInvalidated:
		vm.invalidated = append(vm.invalidated, uvma)
	case listRepin:
		vm.repin = append(vm.repin, uvma)
	}
}

func newXeVM(mm *mmnotifier.MM, bugs xeBugs) *xeVM {
	vm := &xeVM{bugs: bugs, mm: mm, resv: dmafence.NewResv(), timeline: dmafence.ContextAlloc(1),
		jobs: make(chan *xeJob, 16), done: make(chan struct{})}
	vm.lock.Init(lockclass.WithName("&vm->lock"))
	vm.notifierLock.Init(lockclass.WithName("&vm->userptr.notifier_lock"))
	vm.invalidatedLock.Init(lockclass.WithName("&vm->userptr.invalidated_lock"))
	go vm.scheduler()
	return vm
}

// userptrCreate is xe_vma_create for a userptr: mmu_interval_notifier_insert
// over the range, and a notifier_seq that no read_begin can return, so the
// first pin faults the pages in.
func (vm *xeVM) userptrCreate(start, size uint64) (*xeUserptrVMA, error) {
	uvma := &xeUserptrVMA{vm: vm, start: start, size: size}
	var err error
	if uvma.notifier, err = mmnotifier.InsertInterval(vm.mm, start, size, uvma); err != nil {
		return nil, err
	}
	uvma.notifierSeq = ^uint64(0) - 1 // LONG_MAX in the kernel: even, never current
	vm.lock.Lock()
	vm.invalidatedLock.Lock()
	vm.move(uvma, listRepin)
	vm.invalidatedLock.Unlock()
	vm.lock.Unlock()
	return uvma, nil
}

// Invalidate is vma_userptr_invalidate.
func (uvma *xeUserptrVMA) Invalidate(sub *mmnotifier.IntervalNotifier, r *mmnotifier.Range, curSeq uint64) bool {
	vm := uvma.vm
	if !r.Blockable() {
		return false
	}
	vm.notifierLock.Lock()
	sub.SetSeq(curSeq)
	if !uvma.initialBind {
		vm.notifierLock.Unlock()
		return true
	}
	// Tell exec and the rebind worker to repin.
	vm.invalidatedLock.Lock()
	vm.move(uvma, listInvalidated)
	vm.invalidatedLock.Unlock()
	vm.notifierLock.Unlock()
	// Outside notifier_lock: exec holds it for reading while it publishes
	// a job's fence.
	vm.resv.WaitTimeout(dmafence.UsageBookkeep, dmafence.Forever)
	return true
}

// populateRange is xe_hmm_userptr_populate_range(uvma, false).
func (uvma *xeUserptrVMA) populateRange() error {
	seq := uvma.notifier.ReadBegin()
	if seq == uvma.notifierSeq {
		return nil
	}
	npages := int(uvma.size / gfp.PageSize)
	buf, err := uvma.vm.mm.Zone().Kvmalloc(npages*8, gfp.Kernel) // kvmalloc_array(GFP_KERNEL)
	if err != nil {
		return err
	}
	defer uvma.vm.mm.Zone().Kvfree(buf)
	if !uvma.vm.mm.GetNotZero() {
		return mmnotifier.ErrFault
	}
	defer uvma.vm.mm.Put()
	r := mmnotifier.HMMRange{Notifier: uvma.notifier, Start: uvma.start, End: uvma.start + uvma.size,
		PFNs: make([]uint64, npages), DefaultFlags: mmnotifier.HMMPFNReqFault | mmnotifier.HMMPFNReqWrite}
	timeout := time.Now().Add(hmmRangeTimeout)
	for {
		r.NotifierSeq = uvma.notifier.ReadBegin()
		uvma.vm.mm.MmapLock().RLock()
		err = mmnotifier.HMMRangeFault(&r)
		uvma.vm.mm.MmapLock().RUnlock()
		if errors.Is(err, mmnotifier.ErrBusy) && time.Now().Before(timeout) {
			continue
		}
		break
	}
	if err != nil {
		return err
	}
	uvma.notifierSeq = r.NotifierSeq
	return nil
}

// userptrPin is xe_vm_userptr_pin: under vm->lock for writing, collect
// the invalidated userptrs and pin them again.
func (vm *xeVM) userptrPin() error {
	lockclass.AssertHeldWrite(&vm.lock)
	vm.invalidatedLock.Lock()
	for len(vm.invalidated) != 0 {
		vm.move(vm.invalidated[0], listRepin)
	}
	pin := append([]*xeUserptrVMA(nil), vm.repin...)
	vm.invalidatedLock.Unlock()
	for _, uvma := range pin {
		if err := uvma.populateRange(); err != nil {
			return err
		}
		vm.repins.Add(1)
	}
	// Rebound: off the repin list, unless invalidated meanwhile, which
	// moved it back to the invalidated list for the next exec.
	vm.notifierLock.RLock()
	vm.invalidatedLock.Lock()
	for _, uvma := range pin {
		if uvma.list == listRepin {
			vm.move(uvma, 0)
			uvma.initialBind = true
		}
	}
	vm.invalidatedLock.Unlock()
	vm.notifierLock.RUnlock()
	return nil
}

// userptrCheckRepin is xe_vm_userptr_check_repin.
func (vm *xeVM) userptrCheckRepin() bool {
	vm.invalidatedLock.Lock()
	defer vm.invalidatedLock.Unlock()
	return len(vm.invalidated) != 0 || len(vm.repin) != 0
}

// userptrNeedsRepin is __xe_vm_userptr_needs_repin.
func (vm *xeVM) userptrNeedsRepin() error {
	lockclass.AssertHeldRead(&vm.notifierLock)
	vm.invalidatedLock.Lock()
	defer vm.invalidatedLock.Unlock()
	if len(vm.invalidated) != 0 || len(vm.repin) != 0 {
		return mmnotifier.ErrAgain
	}
	return nil
}

// exec is xe_exec_ioctl for a VM with userptrs, not in LR mode.
func (vm *xeVM) exec(ctx context.Context) error {
	for {
		writeLocked := vm.userptrCheckRepin()
		if writeLocked {
			if err := vm.lock.LockKillable(ctx); err != nil {
				return err
			}
			err := vm.userptrPin()
			vm.lock.Downgrade()
			if err != nil {
				vm.lock.RUnlock()
				return err
			}
		} else if err := vm.lock.RLockKillable(ctx); err != nil {
			return err
		}
		// drm_gpuvm_exec_lock: the VM's reservation object, one fence slot.
		var wctx lockclass.WWAcquireCtx
		wctx.Init(dmafence.ReservationClass)
		if err := vm.resv.Lock(&wctx); err != nil {
			panic(err) // one object: no back-off possible
		}
		if err := vm.resv.ReserveFences(1); err != nil {
			panic(err)
		}
		wctx.Done()
		var job *xeJob
		if !vm.bugs.jobUnderNotifierLock {
			job = newXeJob() // xe_sched_job_create
		}
		if err := vm.notifierLock.RLockKillable(ctx); err != nil {
			panic(err)
		}
		if vm.bugs.jobUnderNotifierLock {
			job = newXeJob()
		}
		if vm.userptrNeedsRepin() != nil {
			vm.notifierLock.RUnlock()
			gfp.Free(job.mem)
			vm.resv.Unlock()
			wctx.Fini()
			vm.lock.RUnlock()
			vm.retries.Add(1)
			continue
		}
		// Point of no return: arm the job, publish its fence, push it.
		job.fence = dmafence.New(vm.timeline, vm.seqno.Add(1))
		// The previous job's fence, signalled or not (Resv.Fences, the
		// unlocked iterator, would skip it once signalled).
		job.prev, vm.last = vm.last, job.fence
		vm.resv.AddFence(job.fence, dmafence.UsageBookkeep)
		vm.jobs <- job
		vm.notifierLock.RUnlock()
		vm.resv.Unlock()
		wctx.Fini()
		vm.lock.RUnlock()
		vm.execs.Add(1)
		return nil
	}
}

func newXeJob() *xeJob {
	mem, err := gfp.Alloc(256, gfp.Kernel)
	if err != nil {
		panic(err)
	}
	return &xeJob{mem: mem}
}

// scheduler is the drm scheduler's run_job and completion: the job runs
// on the "GPU" and its fence is signalled, in a signalling section.
func (vm *xeVM) scheduler() {
	defer close(vm.done)
	for job := range vm.jobs {
		cookie := dmafence.BeginSignalling()
		if vm.bugs.waitInRunJob && job.prev != nil {
			job.prev.Wait(context.Background()) //nolint:errcheck // background context
		}
		if err := job.fence.Signal(); err != nil {
			panic(err)
		}
		dmafence.EndSignalling(cookie)
		gfp.Free(job.mem)
	}
}

func (vm *xeVM) close(uvmas []*xeUserptrVMA) {
	close(vm.jobs)
	<-vm.done
	for _, uvma := range uvmas {
		uvma.notifier.Remove()
	}
}
