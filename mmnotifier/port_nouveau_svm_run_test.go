package mmnotifier_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
)

const svmPages = 32

type nouveauRun struct {
	drm  *nouveauDRM
	svmm *nouveauSVMM
	mm   *mmnotifier.MM
	addr uint64
	reap mmnotifier.ReapResult
}

// runNouveau brings up SVM for one client, runs GPU faults of every access
// type against the process's mprotect/madvise/migrate, maps migrated pages
// (nouveau_pfns_map), lets the OOM reaper try the process, and tears down.
func runNouveau(t *testing.T, bugs nouveauBugs) nouveauRun {
	mm := mmnotifier.NewMM(mmnotifier.WithTask(7, "cuda_app"))
	addr, err := mm.Mmap(svmPages*gfp.PageSize, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	require.NoError(t, mm.Write(addr, make([]byte, svmPages*gfp.PageSize)))

	drm := &nouveauDRM{bugs: bugs}
	svm := nouveauSVMInit(drm)
	svmm, err := svmmInit(drm, mm, addr+svmPages*gfp.PageSize, 16*gfp.PageSize)
	require.NoError(t, err)
	require.NoError(t, svm.join(svmm, 0x1000))

	var wg sync.WaitGroup
	wg.Add(1)
	krules.Go("kworker/u4:nouveau_svm_fault", func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for range 30 {
			batch := []svmFault{{inst: 0x1000, addr: addr + rng.Uint64N(svmPages)*gfp.PageSize, access: rng.IntN(4)}, {inst: 0xdead, addr: addr}}
			svm.fault(batch)
		}
	})
	// A buggy variant runs the driver's goroutines before the process's
	// rather than beside them: lockdep learns both orders either way and
	// reports on the first run, while side by side an inversion such as
	// removeUnderMutex can really deadlock, as in the kernel, and hang the
	// test. (The mlx5 and xe runs do the same.)
	if bugs != (nouveauBugs{}) {
		wg.Wait()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 10 {
			a := addr + uint64(i%4)*8*gfp.PageSize
			require.NoError(t, mm.Protect(a, 8*gfp.PageSize, mmnotifier.ProtRead))
			require.NoError(t, mm.Protect(a, 8*gfp.PageSize, mmnotifier.ProtReadWrite))
			require.NoError(t, mm.Discard(a, 2*gfp.PageSize))
			require.NoError(t, mm.Write(a, make([]byte, 8*gfp.PageSize)))
			_, err := mm.Migrate(a, 8*gfp.PageSize, drm) // nouveau_dmem_migrate_vma
			require.NoError(t, err)
			require.NoError(t, svmm.pfnsMap(a, 8))
		}
	}()
	wg.Wait()
	require.NotZero(t, svm.replayed.Load())
	require.EqualValues(t, 30, svm.unknown.Load(), "every fault of the unknown channel is cancelled")
	reap := mm.OOMReap(context.Background(), mmnotifier.WithRetryDelay(0))
	svmm.fini()
	mmnotifier.Synchronize()
	require.True(t, svmm.freed.Load())
	mm.Exit()
	return nouveauRun{drm: drm, svmm: svmm, mm: mm, addr: addr, reap: reap}
}

// The faithful port raises nothing; the OOM reaper's non-blockable
// invalidation is refused with -EAGAIN every time.
func TestNouveauSVMFaithful(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	log := krulestest.CaptureLog(t)
	run := runNouveau(t, nouveauBugs{})
	require.NotZero(t, run.svmm.invalidations.Load())
	require.EqualValues(t, mmnotifier.MaxOOMReapRetries, run.svmm.refused.Load())
	require.Equal(t, mmnotifier.MaxOOMReapRetries, strings.Count(log.String(), "InvalidateRangeStart+0x0 callback failed with -11 in non-blockable context.\n"))
	require.Contains(t, log.String(), "oom_reaper: unable to reap pid:7 (cuda_app)\n")
	require.False(t, run.reap.Reaped)
	require.True(t, run.mm.Reaped(), "MMF_OOM_SKIP is set after the last retry all the same")
}
