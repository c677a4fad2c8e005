package mmnotifier_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
)

const kvmPages = 64 // guest memory; its first half keeps its contents

type kvmRun struct {
	kvm     *kvm
	mm      *mmnotifier.MM
	hva     uint64
	pattern []byte
}

// runKVM starts a VM whose guest memory is 64 pages of the process, runs
// two vCPUs faulting and reading guest memory (checking the unchanging
// half byte for byte) against the process's mprotect/madvise/migrate and
// reclaim's aging, then lets the OOM reaper reap the process.
func runKVM(t *testing.T, bugs kvmBugs) kvmRun {
	zone := newZone(t, 16<<20)
	mm := mmnotifier.NewMM(mmnotifier.WithZone(zone), mmnotifier.WithTask(2710, "qemu-system-x86"))
	hva, err := mm.Mmap(kvmPages*gfp.PageSize, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	pattern := make([]byte, kvmPages*gfp.PageSize)
	for i := range pattern {
		pattern[i] = byte(i/gfp.PageSize) ^ 0x5a
	}
	require.NoError(t, mm.Write(hva, pattern))
	k, err := kvmCreateVM(mm, hva, kvmPages, bugs)
	require.NoError(t, err)
	// The guest touches its memory once, so the invalidations that follow
	// have SPTEs to zap.
	k.touchAll(t)

	var wg sync.WaitGroup
	for v := range 2 {
		wg.Add(1)
		krules.Go(fmt.Sprintf("CPU %d/KVM", v), func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(v), 7))
			buf := make([]byte, gfp.PageSize)
			for range 200 {
				gfn := rng.Uint64N(kvmPages / 2)
				for !k.guestRead(gfn, buf) {
					// EPT violation: fault it in; RET_PF_RETRY re-enters
					// the guest, which faults again.
					_, err := k.pageFault(gfn, rng.IntN(2) == 0)
					if err != nil {
						// A write fault while the process made the page
						// read-only: -EFAULT to userspace, which
						// would fix up and re-run.
						require.ErrorIs(t, err, mmnotifier.ErrFault)
					}
				}
				require.Equal(t, pattern[gfn*gfp.PageSize:(gfn+1)*gfp.PageSize], buf, "the guest reads what the process wrote")
			}
		})
	}
	if bugs != (kvmBugs{}) { // serially, as runNouveau explains
		wg.Wait()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 8 {
			a := hva + uint64(i%4)*16*gfp.PageSize
			require.NoError(t, mm.Protect(a, 16*gfp.PageSize, mmnotifier.ProtRead))
			require.NoError(t, mm.Protect(a, 16*gfp.PageSize, mmnotifier.ProtReadWrite))
			_, err := mm.Migrate(a, 16*gfp.PageSize, nil)
			require.NoError(t, err)
			mm.ClearFlushYoung(hva, hva+kvmPages*gfp.PageSize) // folio_referenced
			mm.ClearYoung(hva, hva+kvmPages*gfp.PageSize)
			mm.TestYoung(a)
			d := hva + kvmPages/2*gfp.PageSize + uint64(i%4)*8*gfp.PageSize
			require.NoError(t, mm.Discard(d, 8*gfp.PageSize))
		}
	}()
	wg.Wait()
	require.NotZero(t, k.zapped.Load())
	require.NotZero(t, k.flushes.Load())
	return kvmRun{kvm: k, mm: mm, hva: hva, pattern: pattern}
}

// touchAll faults every gfn of the guest in, for writing.
func (k *kvm) touchAll(t *testing.T) {
	for gfn := range k.slot.npages {
		for {
			ret, err := k.pageFault(gfn, true)
			require.NoError(t, err)
			if ret == retPFFixed {
				break
			}
		}
	}
}

// close is the VMM's end: the guest touches all its memory, the OOM
// reaper reaps the process (zapping every SPTE in one non-blockable
// range), exit_mmap releases the notifier, then kvm_destroy_vm runs as
// the last file reference goes.
func (run kvmRun) close(t *testing.T) mmnotifier.ReapResult {
	run.kvm.touchAll(t)
	reap := run.mm.OOMReap(context.Background(), mmnotifier.WithRetryDelay(0))
	run.mm.Exit()
	run.kvm.destroy()
	mmnotifier.Synchronize()
	require.EqualValues(t, 1, run.kvm.released.Load())
	require.Empty(t, run.kvm.sptes)
	require.Zero(t, run.kvm.mmuInvalidateInProgress.Load())
	require.Zero(t, run.kvm.mnActiveInvalidateCount)
	return reap
}

// The faithful port raises nothing, although KVM takes kvm->srcu both
// around faults that take mmap_lock and inside invalidations under
// mmap_lock (SRCU readers are recursive: no cycle), and a spinning
// mmu_lock inside the page-table lock for aging. KVM's start never fails,
// so the OOM reaper reaps.
func TestKVMMMUNotifierFaithful(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	log := krulestest.CaptureLog(t)
	run := runKVM(t, kvmBugs{})
	k, mm, hva := run.kvm, run.mm, run.hva

	// Aging: a page the guest touched is young to reclaim, through the
	// notifier, once.
	mm.ClearFlushYoung(hva, hva+kvmPages*gfp.PageSize)
	require.False(t, mm.ClearFlushYoung(hva+gfp.PageSize, hva+2*gfp.PageSize))
	for {
		ret, err := k.pageFault(1, false)
		require.NoError(t, err)
		if ret == retPFFixed {
			break
		}
	}
	mm.ClearFlushYoung(hva+gfp.PageSize, hva+2*gfp.PageSize) // the CPU's own bit from the fault
	require.True(t, k.guestRead(1, make([]byte, gfp.PageSize)))
	require.True(t, mm.TestYoung(hva+gfp.PageSize))
	require.True(t, mm.ClearYoung(hva+gfp.PageSize, hva+2*gfp.PageSize))
	require.False(t, mm.TestYoung(hva+gfp.PageSize))

	// A fault that races with an invalidation of its gfn is retried:
	// mmu_invalidate_in_progress between start and end, the sequence
	// after it.
	r := mmnotifier.NewRange(mm, mmnotifier.EventClear, hva+2*gfp.PageSize, hva+3*gfp.PageSize)
	mm.MmapLock().RLock()
	mmnotifier.InvalidateRangeStart(&r)
	require.EqualValues(t, 1, k.mmuInvalidateInProgress.Load())
	ret := make(chan int)
	go func() { // the vCPU; mmap_lock's read side is not recursive
		r, err := k.pageFault(2, false)
		require.NoError(t, err)
		ret <- r
	}()
	require.Equal(t, retPFRetry, <-ret)
	mmnotifier.InvalidateRangeEnd(&r)
	mm.MmapLock().RUnlock()
	require.Zero(t, k.mmuInvalidateInProgress.Load())
	got, err := k.pageFault(2, false)
	require.NoError(t, err)
	require.Equal(t, retPFFixed, got)

	reap := run.close(t)
	require.True(t, reap.Reaped)
	require.Contains(t, log.String(), "oom_reaper: reaped process 2710 (qemu-system-x86)")
}

// Beside a notifier that refuses the OOM reaper's range (registered after
// KVM, so called first), KVM's start still runs, and so does its end
// once the start has failed: mn_hlist_invalidate_range_start calls every
// start on -EAGAIN, then every end, since a notifier with an end cannot
// know whether its start ran. KVM's counts stay balanced.
func TestKVMMMUNotifierBesideARefusingNotifier(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	log := krulestest.CaptureLog(t)
	zone := newZone(t, 16<<20)
	mm := mmnotifier.NewMM(mmnotifier.WithZone(zone), mmnotifier.WithTask(2710, "qemu-system-x86"))
	hva, err := mm.Mmap(kvmPages*gfp.PageSize, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	k, err := kvmCreateVM(mm, hva, kvmPages, kvmBugs{})
	require.NoError(t, err)
	k.touchAll(t)
	refuse := &mmnotifier.Funcs{Start: func(r *mmnotifier.Range) error {
		if !r.Blockable() {
			return mmnotifier.ErrAgain
		}
		return nil
	}}
	sub, err := mmnotifier.Register(mm, refuse.Notifier())
	require.NoError(t, err)
	reap := mm.OOMReap(context.Background(), mmnotifier.WithRetryDelay(0))
	require.False(t, reap.Reaped)
	require.EqualValues(t, mmnotifier.MaxOOMReapRetries, refuse.Counts().Starts)
	require.Contains(t, log.String(), "callback failed with -11 in non-blockable context.\n")
	require.EqualValues(t, kvmPages, k.zapped.Load(), "KVM's start ran and zapped")
	require.Zero(t, k.mmuInvalidateInProgress.Load())
	require.EqualValues(t, mmnotifier.MaxOOMReapRetries, k.mmuInvalidateSeq.Load(), "every failed start was ended")
	require.Zero(t, k.mnActiveInvalidateCount)
	sub.Unregister()
	mm.Exit()
	k.destroy()
	mmnotifier.Synchronize()
}
