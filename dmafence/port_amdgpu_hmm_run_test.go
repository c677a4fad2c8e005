package dmafence_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
)

const (
	amdgpuBOs, amdgpuBOPages = 3, 8
	amdgpuCSers, amdgpuCSs   = 2, 20
	amdgpuMaxCSs             = 1000 // per goroutine, while the process runs
)

// runAMDGPU creates three userptr BOs and runs command submissions using
// all three, in orders that contend in drm_exec, from two goroutines,
// against the process's mprotect and madvise of the same memory.
func runAMDGPU(t *testing.T, bugs amdgpuBugs) (*amdgpuDevice, []*amdgpuBO) {
	zone, err := gfp.NewZone(16 << 20)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, zone.Close()) })
	mm := mmnotifier.NewMM(mmnotifier.WithZone(zone), mmnotifier.WithTask(1234, "glxgears"))
	adev := newAMDGPUDevice(bugs, amdgpuCSers*amdgpuMaxCSs)
	var bos []*amdgpuBO
	for range amdgpuBOs {
		addr, err := mm.Mmap(amdgpuBOPages*gfp.PageSize, mmnotifier.ProtReadWrite)
		require.NoError(t, err)
		bo, err := adev.userptrCreate(mm, addr, amdgpuBOPages*gfp.PageSize)
		require.NoError(t, err)
		bos = append(bos, bo)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	if bugs != (amdgpuBugs{}) {
		close(stop)
	}
	for g := range amdgpuCSers {
		wg.Add(1)
		krules.Go("glxgears:cs", func() { // a thread of the process
			defer wg.Done()
			for i := range amdgpuMaxCSs {
				if i >= amdgpuCSs {
					select {
					case <-stop:
						return
					default:
					}
				}
				list := make([]*amdgpuBO, len(bos))
				for j := range bos {
					list[j] = bos[(i+j*(g+1))%len(bos)]
				}
				for {
					err := adev.cs(context.Background(), list)
					if errors.Is(err, mmnotifier.ErrAgain) {
						continue // drmIoctl restarts
					}
					// A userptr mprotected read-only fails hmm_range_fault
					// for write with -EPERM: the submission fails.
					if err != nil {
						require.ErrorIs(t, err, mmnotifier.ErrPerm)
					}
					break
				}
			}
		})
	}
	if bugs != (amdgpuBugs{}) { // serially, as runXe explains
		wg.Wait()
	}
	wg.Add(1)
	krules.Go("glxgears", func() {
		defer wg.Done()
		if bugs == (amdgpuBugs{}) {
			defer close(stop)
		}
		for i := range 12 {
			bo := bos[i%len(bos)]
			churnUserptr(t, mm, bo.start, bo.size)
		}
	})
	wg.Wait()
	adev.close()
	for _, bo := range bos {
		require.True(t, bo.gem.resv.TestSignaled(dmafence.UsageBookkeep))
		bo.unregister()
	}
	mm.Exit()
	return adev, bos
}

// The faithful port raises nothing: the notifier waits for fences under
// notifier_lock, which the CS holds only to check the userptrs and publish
// the job without allocating, and run_job signals without allocating.
func TestAMDGPUUserptrFaithful(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	adev, _ := runAMDGPU(t, amdgpuBugs{})
	require.NotZero(t, adev.submits.Load())
	require.NotZero(t, adev.invalidations.Load())
	t.Logf("%d submissions, %d restarted with -EAGAIN, %d invalidations",
		adev.submits.Load(), adev.eagain.Load(), adev.invalidations.Load())
}
