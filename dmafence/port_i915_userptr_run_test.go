package dmafence_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
)

// runI915 creates three userptr objects and runs execbufs using all three,
// in orders that contend, from two goroutines, against the process's
// mprotect and madvise of the same memory. The engine runs once gate is
// closed.
func runI915(t *testing.T, bugs i915Bugs, gate <-chan struct{}) *i915Device {
	zone, err := gfp.NewZone(16 << 20)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, zone.Close()) })
	mm := mmnotifier.NewMM(mmnotifier.WithZone(zone), mmnotifier.WithTask(2222, "glxgears"))
	i915 := newI915Device(bugs, amdgpuCSers*amdgpuMaxCSs, gate)
	var objs []*i915Object
	for range amdgpuBOs {
		addr, err := mm.Mmap(amdgpuBOPages*gfp.PageSize, mmnotifier.ProtReadWrite)
		require.NoError(t, err)
		obj, err := i915.userptrCreate(mm, addr, amdgpuBOPages*gfp.PageSize)
		require.NoError(t, err)
		objs = append(objs, obj)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	if bugs != (i915Bugs{}) {
		close(stop)
	}
	for g := range amdgpuCSers {
		wg.Add(1)
		krules.Go("glxgears:cs", func() {
			defer wg.Done()
			for i := range amdgpuMaxCSs {
				if i >= amdgpuCSs {
					select {
					case <-stop:
						return
					default:
					}
				}
				list := make([]*i915Object, len(objs))
				for j := range objs {
					list[j] = objs[(i+j*(g+1))%len(objs)]
				}
				for {
					err := i915.execbuf(context.Background(), list)
					if errAgain(err) {
						continue
					}
					// pin_user_pages_fast(FOLL_WRITE) of a read-only
					// range: -EFAULT, the execbuf fails.
					if err != nil {
						require.ErrorIs(t, err, mmnotifier.ErrFault)
					}
					break
				}
			}
		})
	}
	if bugs != (i915Bugs{}) { // serially, as runXe explains
		wg.Wait()
	}
	wg.Add(1)
	krules.Go("glxgears", func() {
		defer wg.Done()
		if bugs == (i915Bugs{}) {
			defer close(stop)
		}
		for i := range 12 {
			obj := objs[i%len(objs)]
			churnUserptr(t, mm, obj.start, obj.size)
		}
	})
	wg.Wait()
	i915.close()
	for _, obj := range objs {
		require.True(t, obj.gem.resv.TestSignaled(dmafence.UsageBookkeep))
		obj.notifier.Remove()
	}
	mm.Exit()
	return i915
}

// The faithful port raises nothing: the notifier holds the spinning lock
// only to bump the sequence, and execbuf only to check it.
func TestI915UserptrFaithful(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	gate := make(chan struct{})
	close(gate)
	i915 := runI915(t, i915Bugs{}, gate)
	require.NotZero(t, i915.submits.Load())
	require.NotZero(t, i915.invalidations.Load())
	t.Logf("%d submissions, %d skipped with -EAGAIN, %d invalidations",
		i915.submits.Load(), i915.skipped.Load(), i915.invalidations.Load())
}
