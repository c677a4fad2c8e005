//go:build !krules_nolockdep

package krules_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
)

// A GPU userptr driver in the shape of amdgpu_hmm.c and xe_vm.c: each
// buffer object mirrors user memory through an interval notifier whose
// invalidate, under the device's notifier lock, waits for the buffer's
// fences (dma_resv_wait_timeout, BOOKKEEP). A submit locks the job's buffers
// in one acquire context, backing off on -EDEADLK, publishes the job's
// fence in them, and hands the job to the scheduler goroutine, which
// signals the fence when the "GPU" is done.
//
// The buggy scheduler allocates the job's completion record with
// GFP_KERNEL in its signalling path. Reclaim can invalidate page tables,
// so that allocation can wait for an MMU notifier, which waits for the
// very fence being signalled: a deadlock that needs memory pressure at the
// wrong moment. krules reports it on the first job, without any pressure,
// thanks to the priming every reservation object does (dma_resv_lockdep).
// The fixed scheduler uses memory the submit allocated beforehand.
func Example_userptrFenceSignalling() {
	lockclass.Default().Reset()
	reports := krules.Collect(func() {
		dev := newGPUDevice(true)
		bos := dev.newUserptrBOs(2)
		dev.submit(bos)
		dev.close()
	})
	for _, r := range reports {
		fmt.Println(r.Kind)
		fmt.Println(r.Headline)
		text := r.Text[strings.Index(r.Text, "Chain exists of:"):]
		fmt.Print(text[:strings.Index(text, "\n\n")+1])
	}

	lockclass.Default().Reset()
	reports = krules.Collect(func() {
		dev := newGPUDevice(false)
		bos := dev.newUserptrBOs(2)
		dev.submit(bos)
		dev.invalidate()
		dev.close()
	})
	fmt.Println("fixed driver:", len(reports), "reports")
	// Output:
	// circular-dependency
	// WARNING: possible circular locking dependency detected
	// Chain exists of:
	//   fs_reclaim --> mmu_notifier_invalidate_range_start --> dma_fence_map
	// fixed driver: 0 reports
}

// gpuDevice is the device: its notifier lock, the userptr address space,
// a fence timeline and the scheduler.
type gpuDevice struct {
	buggy        bool
	notifierLock lockclass.Mutex // adev->notifier_lock, xe's userptr.notifier_lock
	mm           *mmnotifier.MM
	timeline     uint64
	seqno        atomic.Uint64
	jobs         chan *gpuJob
	done         chan struct{}
	bos          []*userptrBO
	signalled    atomic.Int64
	invalidated  atomic.Int64 // Invalidate calls
	backoffs     atomic.Int64 // ErrDeadlock back-offs in lockResvs
}

// userptrBO is a buffer object backed by user memory.
type userptrBO struct {
	dev  *gpuDevice
	resv *dmafence.Resv
	addr uint64
	sub  *mmnotifier.IntervalNotifier
}

// gpuJob is a submitted job; record is its completion record.
type gpuJob struct {
	fence  *dmafence.Fence
	record []byte
}

const boPages = 4

func newGPUDevice(buggy bool) *gpuDevice {
	d := &gpuDevice{
		buggy:    buggy,
		mm:       mmnotifier.NewMM(mmnotifier.WithoutReclaim()),
		timeline: dmafence.ContextAlloc(1),
		jobs:     make(chan *gpuJob, 16),
		done:     make(chan struct{}),
	}
	d.notifierLock.Init(lockclass.WithName("&adev->notifier_lock"))
	go d.scheduler()
	return d
}

// newUserptrBOs maps n buffers of user memory and subscribes to their
// invalidations (amdgpu_hmm_register).
func (d *gpuDevice) newUserptrBOs(n int) []*userptrBO {
	var bos []*userptrBO
	for range n {
		addr, err := d.mm.Mmap(boPages*mmnotifier.PageSize, mmnotifier.ProtReadWrite)
		if err != nil {
			panic(err)
		}
		if err := d.mm.Write(addr, make([]byte, boPages*mmnotifier.PageSize)); err != nil {
			panic(err)
		}
		bo := &userptrBO{dev: d, resv: dmafence.NewResv(), addr: addr}
		if bo.sub, err = mmnotifier.InsertInterval(d.mm, addr, boPages*mmnotifier.PageSize, bo); err != nil {
			panic(err)
		}
		bos = append(bos, bo)
	}
	d.bos = append(d.bos, bos...)
	return bos
}

// Invalidate is amdgpu_hmm_invalidate_gfx / vma_userptr_invalidate: under
// the notifier lock, bump the sequence and wait until the GPU is done with
// the buffer.
func (bo *userptrBO) Invalidate(sub *mmnotifier.IntervalNotifier, r *mmnotifier.Range, curSeq uint64) bool {
	if !r.Blockable() {
		return false
	}
	bo.dev.notifierLock.Lock()
	defer bo.dev.notifierLock.Unlock()
	bo.dev.invalidated.Add(1)
	sub.SetSeq(curSeq)
	bo.resv.WaitTimeout(dmafence.UsageBookkeep, dmafence.Forever)
	return true
}

// submit is the command-submission ioctl: validate the userptrs, lock
// every buffer in one acquire context (drm_exec), publish the job's fence
// under the notifier lock unless an invalidation collided, queue the job.
func (d *gpuDevice) submit(bos []*userptrBO) {
	job := &gpuJob{}
	if !d.buggy {
		// The completion record is allocated here, where reclaim is
		// allowed, not in the scheduler's signalling path.
		job.record = allocRecord()
	}
	for {
		seqs := make([]uint64, len(bos))
		for i, bo := range bos {
			seqs[i] = bo.sub.ReadBegin()
		}
		var ctx lockclass.WWAcquireCtx
		ctx.Init(dmafence.ReservationClass)
		d.backoffs.Add(int64(lockResvs(&ctx, bos)))
		for _, bo := range bos {
			if err := bo.resv.ReserveFences(1); err != nil {
				panic(err)
			}
		}
		ctx.Done()
		d.notifierLock.Lock()
		retry := false
		for i, bo := range bos {
			retry = retry || bo.sub.ReadRetry(seqs[i])
		}
		if !retry {
			job.fence = dmafence.New(d.timeline, d.seqno.Add(1))
			for _, bo := range bos {
				bo.resv.AddFence(job.fence, dmafence.UsageBookkeep)
			}
		}
		d.notifierLock.Unlock()
		for _, bo := range bos {
			bo.resv.Unlock()
		}
		ctx.Fini()
		if !retry {
			d.jobs <- job
			return
		}
	}
}

// lockResvs locks every buffer's reservation object inside ctx, backing
// off on ErrDeadlock: unlock all, sleep on the contended one, start over.
// It returns how many times it backed off.
func lockResvs(ctx *lockclass.WWAcquireCtx, bos []*userptrBO) (backoffs int) {
	var contended *userptrBO
	for {
		var held []*userptrBO
		if contended != nil {
			held = append(held, contended)
		}
		ok := true
		for _, bo := range bos {
			if bo == contended {
				continue
			}
			if err := bo.resv.Lock(ctx); err != nil {
				if !errors.Is(err, lockclass.ErrDeadlock) {
					panic(err)
				}
				for _, h := range held {
					h.resv.Unlock()
				}
				contended = bo
				bo.resv.LockSlow(ctx)
				backoffs++
				ok = false
				break
			}
			held = append(held, bo)
		}
		if ok {
			return backoffs
		}
	}
}

// scheduler is the drm scheduler's completion path: the GPU finished the
// job; write the completion record and signal the fence, inside a fence
// signalling section.
func (d *gpuDevice) scheduler() {
	defer close(d.done)
	for job := range d.jobs {
		cookie := dmafence.BeginSignalling()
		if d.buggy {
			job.record = allocRecord() // GFP_KERNEL in the signalling path
		}
		copy(job.record, "done")
		if err := job.fence.Signal(); err != nil {
			panic(err)
		}
		dmafence.EndSignalling(cookie)
		gfp.Free(job.record)
		d.signalled.Add(1)
	}
}

func allocRecord() []byte {
	b, err := gfp.Alloc(64, gfp.Kernel)
	if err != nil {
		panic(err)
	}
	return b
}

// invalidate makes the process change the protection of every buffer
// twice, which invalidates them (and waits for their fences).
func (d *gpuDevice) invalidate() {
	for _, bo := range d.bos {
		for _, prot := range []mmnotifier.Prot{mmnotifier.ProtRead, mmnotifier.ProtReadWrite} {
			if err := d.mm.Protect(bo.addr, boPages*mmnotifier.PageSize, prot); err != nil {
				panic(err)
			}
		}
		if err := d.mm.Write(bo.addr, []byte{1}); err != nil {
			panic(err)
		}
	}
}

func (d *gpuDevice) close() {
	close(d.jobs)
	<-d.done
	for _, bo := range d.bos {
		bo.sub.Remove()
	}
	d.mm.Exit()
}

// The buggy scheduler is reported on its first job, with the kernel's
// headline and the chain through dma_fence_map.
func TestUserptrSignallingAllocationReported(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	dev := newGPUDevice(true)
	dev.submit(dev.newUserptrBOs(2))
	dev.close()
	require.EqualValues(t, 1, dev.signalled.Load())
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "WARNING: possible circular locking dependency detected", r.Headline)
	require.Contains(t, r.Text, "dma_fence_map")
	require.Contains(t, r.Text, "fs_reclaim --> mmu_notifier_invalidate_range_start --> dma_fence_map")
	require.Contains(t, r.Text, "gpuDevice).scheduler")
}

// The fixed driver raises nothing under concurrent submits and
// invalidations.
func TestUserptrFixedStress(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	dev := newGPUDevice(false)
	bos := dev.newUserptrBOs(6)
	const submitters, jobs = 4, 25
	var wg sync.WaitGroup
	for s := range submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				// Overlapping sets in different orders, so that the
				// acquire contexts collide and back off.
				a, b, c := bos[(s+j)%6], bos[(s+2*j+1)%6], bos[(5*s+j+3)%6]
				set := []*userptrBO{a}
				if b != a {
					set = append(set, b)
				}
				if c != a && c != b {
					set = append(set, c)
				}
				dev.submit(set)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 10 {
			dev.invalidate()
		}
	}()
	wg.Wait()
	dev.close()
	require.EqualValues(t, submitters*jobs, dev.signalled.Load())
	require.EqualValues(t, 10*2*len(bos), dev.invalidated.Load(), "every protection change invalidated its buffer")
	t.Logf("%d back-offs", dev.backoffs.Load())
	for _, bo := range bos {
		require.True(t, bo.resv.TestSignaled(dmafence.UsageBookkeep))
	}
}
