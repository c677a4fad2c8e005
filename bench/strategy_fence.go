package main

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
)

// fenceStrategy is a GPU userptr driver's (amdgpu_hmm.c, xe_vm.c): the
// device's jobs read the mirrored pages, so a blockable invalidation first
// waits for the jobs still using them, dma_resv_wait_timeout on the
// mirror's reservation object (BOOKKEEP), whose fences a scheduler
// goroutine signals as the jobs finish. The entries are then zapped with a
// stack buffer, as strategy 5 does, so the difference between the two is
// the wait. It is the one strategy whose callback sleeps for another
// goroutine's work rather than for memory.
var fenceStrategy = strategy{
	key: "fence", label: "fence wait (GPU)",
	lesson:   "A GPU userptr notifier (amdgpu, xe) waits for the jobs still reading the pages: dma_resv_wait_timeout on the buffer's fences, signalled by the scheduler. It needs no memory in the callback and raises no report, because the signalling path neither allocates nor takes a lock the waiter holds: the job and its fence slot are allocated at submission, before the notifier lock, and the fence is published under that lock. The price is latency: a blockable invalidation lasts as long as the GPU job it waits for, whatever the memory condition (fallback counts the waits). A non-blockable callback cannot wait: it zaps an idle buffer (dma_resv_test_signaled) and returns -EAGAIN for a busy one; amdgpu and xe give up on every non-blockable range, so the OOM reaper cannot reap a process while it has userptr buffers.",
	fallback: func(m modeResult) int64 { return m.FenceWaits },
	probe:    func(d *device, _ int) (buffers, error) { return newFenceBuffers(d, false), nil },
}

// gpuJobTime is how long the device works on a job: a short compute or
// copy job. A shorter one would last as long: when every goroutine waits,
// the Go runtime sleeps in epoll_wait with a timeout in whole milliseconds
// (runtime/netpoll_epoll.go), so 100 µs jobs took 1 ms whenever the
// workers were all waiting for them, and the p50 swung between the two.
const gpuJobTime = time.Millisecond

// fenceBuffers is the device's GPU side: a reservation object per mirror
// (the userptr buffer object) and the scheduler.
type fenceBuffers struct {
	noBuffers
	zone     *gfp.Zone
	timeline uint64 // the device's ring: dma_fence_context_alloc
	// ring serialises arming a job (its seqno) and pushing it to the
	// scheduler, so the ring's fences signal in seqno order, as a
	// context's submissions are serialised in amdgpu_cs_ioctl.
	ring    lockclass.Mutex
	seqno   uint64        // the ring's last job, under ring
	bos     sync.Map      // *mirror -> *userptrBO; lock-free for the callbacks
	jobs    chan gpuJob   // submitted, in ring order
	retired chan struct{} // closed when the scheduler returns
	// allocInSignalling makes the scheduler allocate a completion record
	// with GFP_KERNEL in its signalling section: the bug the annotations
	// exist for, which the tests run to show it is caught here too.
	allocInSignalling bool
}

// userptrBO is a buffer object backed by the mirrored memory.
type userptrBO struct {
	resv dmafence.Resv
	// seq is bumped by every invalidation under the mirror's lock (the
	// notifier lock): mmu_interval_set_seq. A submission that read it
	// before revalidating publishes its fence only if it has not moved
	// (mmu_interval_read_retry), as amdgpu_cs_submit does.
	seq atomic.Uint64
}

type gpuJob struct {
	fence *dmafence.Fence
	due   time.Time // when the device is done with it
}

func newFenceBuffers(d *device, allocInSignalling bool) *fenceBuffers {
	b := &fenceBuffers{
		zone: d.zone, timeline: dmafence.ContextAlloc(1), allocInSignalling: allocInSignalling,
		jobs: make(chan gpuJob, 64), retired: make(chan struct{}),
	}
	b.ring.Init(lockclass.WithName("&ring->submit_lock"))
	krules.Go("drm_sched", b.scheduler)
	return b
}

// attach gives the mirror its buffer object; dma_resv_init may sleep (the
// first one of a validator generation primes lockdep), which attach may.
func (b *fenceBuffers) attach(m *mirror) error {
	bo := new(userptrBO)
	bo.resv.Init()
	b.bos.Store(m, bo)
	return nil
}

func (b *fenceBuffers) detach(m *mirror) { b.bos.Delete(m) }

func (b *fenceBuffers) bo(m *mirror) *userptrBO {
	v, _ := b.bos.Load(m)
	return v.(*userptrBO)
}

// zap runs under the mirror's lock, the driver's notifier lock. Every lock
// held while waiting is ordered before dma_fence_map, so the signalling
// path must take none of them; the submission takes this one only to
// publish a fence, outside any signalling section. Only the application's
// buffers have jobs: an OOM victim's are idle.
func (b *fenceBuffers) zap(m *mirror, st *modeStats, first uint64, npages int, md mode) error {
	bo := b.bo(m)
	switch idle := bo.resv.TestSignaled(dmafence.UsageBookkeep); {
	case md == nonBlockable && !idle:
		return errAgain
	case md == blockable && idle:
		dmafence.MightWait() // the rule is checked on every call all the same
	case md == blockable:
		st.fenceWaits.Add(1)
		bo.resv.WaitTimeout(dmafence.UsageBookkeep, dmafence.Forever)
	}
	bo.seq.Add(1)
	var buf [stackBufEntries]uint64
	m.post(st, buf[:], first, npages)
	return nil
}

// submit is the application's next step after each change to its memory,
// on its own goroutine: a GPU job on the buffer (the exec ioctl). It locks
// the buffer in an acquire context (drm_exec) and reserves the fence slot
// while allocating is allowed, then revalidates the pages and, under the
// notifier lock, arms the job, publishes its fence and pushes it to the
// scheduler, as amdgpu_cs_submit does, unless an invalidation came in
// between (the job is then dropped, as amdgpu_cs returns -EAGAIN; the next
// change submits again). The application does
// the submitting, not a goroutine of the device's: on two cores a
// submitter goroutine ran about once a time slice (10 ms), 14 jobs in a
// 150 ms run against 45000 invalidations, so the callbacks found nothing
// to wait for.
func (b *fenceBuffers) submit(m *mirror) {
	bo := b.bo(m)
	var ctx lockclass.WWAcquireCtx
	ctx.Init(dmafence.ReservationClass)
	if err := bo.resv.Lock(&ctx); err != nil {
		bo.resv.LockSlow(&ctx) // one object: never contended by a context
	}
	if err := bo.resv.ReserveFences(1); err != nil { // GFP_KERNEL
		bo.resv.Unlock()
		ctx.Fini()
		return
	}
	ctx.Done()
	seq := bo.seq.Load() // mmu_interval_read_begin; hmm_range_fault would run here
	m.mu.Lock()
	if bo.seq.Load() == seq { // mmu_interval_read_retry
		b.ring.Lock()
		b.seqno++
		f := dmafence.New(b.timeline, b.seqno) // drm_sched_job_arm
		bo.resv.AddFence(f, dmafence.UsageBookkeep)
		b.jobs <- gpuJob{fence: f, due: time.Now().Add(gpuJobTime)} // the scheduler never takes these locks
		b.ring.Unlock()
	}
	m.mu.Unlock()
	bo.resv.Unlock()
	ctx.Fini()
}

// scheduler is the drm scheduler's completion path: as each job finishes,
// in ring order, it signals the job's fence inside a fence signalling
// section.
func (b *fenceBuffers) scheduler() {
	defer close(b.retired)
	for job := range b.jobs {
		if d := time.Until(job.due); d > 0 {
			time.Sleep(d)
		}
		cookie := dmafence.BeginSignalling()
		if b.allocInSignalling {
			if rec, err := b.zone.Alloc(64, gfp.Kernel); err == nil {
				b.zone.Free(rec)
			}
		}
		if err := job.fence.Signal(); err != nil {
			panic(err) // each job's fence is signalled once, here
		}
		dmafence.EndSignalling(cookie)
	}
}

// close lets the scheduler finish the jobs submitted: every mirror is
// released and no worker runs, so nobody waits on them.
func (b *fenceBuffers) close() error {
	close(b.jobs)
	<-b.retired
	return nil
}
