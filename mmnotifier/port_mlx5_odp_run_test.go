package mmnotifier_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
)

const odpPages = 64

// runMlx5 registers an ODP MR over 64 pages of a process and runs the
// device's page faults against the process's munmap/mprotect/madvise, then
// the OOM reaper.
func runMlx5(t *testing.T, bugs mlx5Bugs, faulters int) (*mlx5Dev, *mlx5MR) {
	zone, err := gfp.NewZone(16 << 20)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, zone.Close()) })
	mm := mmnotifier.NewMM(mmnotifier.WithZone(zone), mmnotifier.WithTask(4242, "ibv_rc_pingpong"))
	addr, err := mm.Mmap(odpPages*gfp.PageSize, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	require.NoError(t, mm.Write(addr, make([]byte, odpPages*gfp.PageSize)))

	dev := newMlx5Dev(zone, bugs)
	defer dev.close()
	mr, err := odpGet(mm, dev, addr, odpPages*gfp.PageSize)
	require.NoError(t, err)

	var wg sync.WaitGroup
	for f := range faulters {
		wg.Add(1)
		krules.Go("kworker/u4:mlx5_ib_page_fault", func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(f), 1))
			for range 40 {
				first := rng.Uint64N(odpPages - 4)
				_, err := mr.pagefaultRealMR(addr+first*gfp.PageSize, 4*gfp.PageSize, true)
				// A write fault while the range is read-only fails as
				// hmm_range_fault does, with -EPERM; the device gets an
				// error completion.
				if err != nil && !errors.Is(err, mmnotifier.ErrPerm) {
					require.ErrorIs(t, err, mmnotifier.ErrBusy)
				}
			}
		})
	}
	if bugs != (mlx5Bugs{}) { // serially, as runNouveau explains
		wg.Wait()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 20 {
			a := addr + uint64(i%8)*8*gfp.PageSize
			require.NoError(t, mm.Protect(a, 8*gfp.PageSize, mmnotifier.ProtRead))
			require.NoError(t, mm.Protect(a, 8*gfp.PageSize, mmnotifier.ProtReadWrite))
			require.NoError(t, mm.Discard(a, 4*gfp.PageSize))
		}
	}()
	wg.Wait()
	mr.release()
	mm.Exit()
	return dev, mr
}

// The faithful port raises nothing, as v6.12 lockdep raises nothing for
// mlx5 ODP: the XLT is GFP_ATOMIC under umem_mutex, read_begin comes before
// umem_mutex, a non-blockable invalidation is refused.
func TestMlx5ODPFaithful(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	dev, mr := runMlx5(t, mlx5Bugs{}, 1)
	require.NotZero(t, dev.xltPosted)
	require.NotZero(t, mr.odp.invalidations)
	require.Zero(t, mr.odp.npages, "release unmapped every page")
}

// The OOM reaper's invalidation is non-blockable; mlx5 refuses it and the
// reaper gives up. An interval callback that sleeps there instead is not
// inside a non-block section in v6.12 (mn_itree_invalidate has no
// non_block_start, unlike mn_hlist_invalidate_range_start), so the kernel
// says nothing, and neither does krules.
func TestMlx5ODPOOMReap(t *testing.T) {
	log := krulestest.CaptureLog(t)
	for _, bugs := range []mlx5Bugs{{}, {ignoreBlockable: true}} {
		krulestest.ResetDefault(t)
		rec := krulestest.Record(t)
		zone, err := gfp.NewZone(16 << 20)
		require.NoError(t, err)
		mm := mmnotifier.NewMM(mmnotifier.WithZone(zone), mmnotifier.WithTask(4242, "ibv_rc_pingpong"))
		addr, err := mm.Mmap(odpPages*gfp.PageSize, mmnotifier.ProtReadWrite)
		require.NoError(t, err)
		require.NoError(t, mm.Write(addr, make([]byte, odpPages*gfp.PageSize)))
		dev := newMlx5Dev(zone, bugs)
		mr, err := odpGet(mm, dev, addr, odpPages*gfp.PageSize)
		require.NoError(t, err)
		_, err = mr.pagefaultRealMR(addr, 8*gfp.PageSize, true)
		require.NoError(t, err)
		res := mm.OOMReap(context.Background(), mmnotifier.WithRetryDelay(0))
		require.Equal(t, bugs.ignoreBlockable, res.Reaped)
		if !bugs.ignoreBlockable {
			require.EqualValues(t, mmnotifier.MaxOOMReapRetries, mr.odp.blocked.Load())
			// Interval notifiers fail without the list notifiers' log line.
			require.Equal(t, "oom_reaper: unable to reap pid:4242 (ibv_rc_pingpong)\nvictim pid:4242 (ibv_rc_pingpong): mmap_lock free\n", log.String())
		} else {
			require.Contains(t, log.String(), "oom_reaper: reaped process 4242 (ibv_rc_pingpong)")
		}
		require.Empty(t, rec.Reports())
		mr.release()
		mm.Exit()
		dev.close()
		require.NoError(t, zone.Close())
	}
}
