package mmnotifier_test

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

// runXe creates two userptr VMAs and runs execs from two goroutines
// against the process's mprotect and madvise of the same memory.
func runXe(t *testing.T, bugs xeBugs) *xeVM {
	zone, err := gfp.NewZone(16 << 20)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, zone.Close()) })
	mm := mmnotifier.NewMM(mmnotifier.WithZone(zone), mmnotifier.WithTask(99, "vulkan_app"))
	const pages = 8
	vm := newXeVM(mm, bugs)
	var uvmas []*xeUserptrVMA
	for range 2 {
		addr, err := mm.Mmap(pages*gfp.PageSize, mmnotifier.ProtReadWrite)
		require.NoError(t, err)
		uvma, err := vm.userptrCreate(addr, pages*gfp.PageSize)
		require.NoError(t, err)
		uvmas = append(uvmas, uvma)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		krules.Go("xe_exec", func() {
			defer wg.Done()
			for range 20 {
				// A userptr mprotected read-only fails the pin, as
				// hmm_range_fault does, with -EPERM: the exec fails.
				if err := vm.exec(context.Background()); err != nil {
					require.ErrorIs(t, err, mmnotifier.ErrPerm)
				}
			}
		})
	}
	if bugs != (xeBugs{}) { // serially, as runNouveau explains
		wg.Wait()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 10 {
			u := uvmas[i%2]
			require.NoError(t, mm.Protect(u.start, u.size, mmnotifier.ProtRead))
			require.NoError(t, mm.Protect(u.start, u.size, mmnotifier.ProtReadWrite))
			require.NoError(t, mm.Discard(u.start, gfp.PageSize))
		}
	}()
	wg.Wait()
	if bugs == (xeBugs{}) {
		// The application's next submit, after the last invalidation:
		// the execs may all have run before the first one, and this one
		// re-pins what the invalidations left (xe_vm_userptr_pin).
		require.NoError(t, vm.exec(context.Background()))
	}
	vm.close(uvmas)
	require.True(t, vm.resv.TestSignaled(dmafence.UsageBookkeep))
	mm.Exit()
	return vm
}

// The faithful port raises nothing: the notifier waits for the VM's fences
// after dropping notifier_lock, exec allocates its job before taking it,
// and the scheduler signals without waiting.
func TestXeUserptrFaithful(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	vm := runXe(t, xeBugs{})
	require.NotZero(t, vm.execs.Load())
	require.NotZero(t, vm.repins.Load())
}
