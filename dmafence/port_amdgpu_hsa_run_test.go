package dmafence_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
)

// runKFD allocates three HSA userptrs and runs the process's mprotect and
// madvise of them against a user-mode queue touching them and the restore
// worker bringing them back. A buggy run waits for each restore before the
// next change, so that a worker holding notifier_lock across its page
// collection cannot meet an invalidation holding mmap_lock, as it can in
// the kernel, and hang.
func runKFD(t *testing.T, bugs kfdBugs) *kfdProcessInfo {
	zone, err := gfp.NewZone(16 << 20)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, zone.Close()) })
	mm := mmnotifier.NewMM(mmnotifier.WithZone(zone), mmnotifier.WithTask(4321, "rocminfo"))
	adev := newAMDGPUDevice(amdgpuBugs{}, 1)
	p := newKFDProcess(mm, bugs)
	for range amdgpuBOs {
		addr, err := mm.Mmap(amdgpuBOPages*gfp.PageSize, mmnotifier.ProtReadWrite)
		require.NoError(t, err)
		_, err = p.allocUserptr(adev, addr, amdgpuBOPages*gfp.PageSize)
		require.NoError(t, err)
	}
	restored := func() bool {
		p.notifierLock.Lock()
		defer p.notifierLock.Unlock()
		return p.evictedBos == 0 && p.queuesActive
	}
	waitRestored := func() {
		deadline := time.Now().Add(10 * time.Second)
		for !restored() {
			require.True(t, time.Now().Before(deadline), "the restore worker never resumed the queues")
			time.Sleep(time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var ran int // guarded by the WaitGroup
	wg.Add(1)
	krules.Go("rocminfo:queue", func() { // the user-mode queue, as the GPU runs it
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if p.queueAccess() {
				ran++
			}
			time.Sleep(50 * time.Microsecond)
		}
	})
	processDone := make(chan struct{})
	krules.Go("rocminfo", func() {
		defer close(processDone)
		for i := range 9 {
			mem := p.mems[i%len(p.mems)]
			if bugs != (kfdBugs{}) {
				// Discards only, each restored before the next: a
				// read-only range would fail every restore (hmm_range_fault
				// for write: -EPERM) and keep it rescheduling.
				require.NoError(t, mm.Discard(mem.bo.start, gfp.PageSize))
				waitRestored()
				continue
			}
			churnUserptr(t, mm, mem.bo.start, mem.bo.size)
			time.Sleep(2 * amdgpuUserptrRestoreDelay) // let restores interleave
		}
	})
	<-processDone
	waitRestored()
	require.True(t, p.queueAccess(), "resumed")
	close(stop)
	wg.Wait()
	p.close()
	adev.close()
	mm.Exit()
	t.Logf("the queue ran %d times", ran)
	return p
}

// The faithful port raises nothing, and the queues never run on pages an
// invalidation has taken away: every restore that resumes them found
// nothing invalidated under notifier_lock.
func TestKFDUserptrFaithful(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	p := runKFD(t, kfdBugs{})
	require.Zero(t, p.warnings.Load())
	require.NotZero(t, p.evictions.Load())
	require.NotZero(t, p.restores.Load())
	t.Logf("%d evictions, %d restores, %d rescheduled", p.evictions.Load(), p.restores.Load(), p.reschedules.Load())
}
