package mmnotifier_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
)

// gntdevMap has the process mmap a grant map at a fresh address, as
// mmap(2) calls gntdev_mmap under mmap_lock.
func gntdevMap(t *testing.T, priv *gntdevPriv, count int, prot mmnotifier.Prot) (uint64, *gntdevGrantMap) {
	index, err := priv.ioctlMapGrantRef(count)
	require.NoError(t, err)
	var m *gntdevGrantMap
	addr, err := priv.mm.MmapDevice(uint64(count)*gfp.PageSize, prot, func(v *mmnotifier.VMA) (mmnotifier.VMOps, error) {
		var err error
		if m, err = priv.mmap(v.Start(), index, uint64(count)); err != nil {
			return nil, err
		}
		return m, nil
	})
	require.NoError(t, err)
	return addr, m
}

// runGntdev opens the device in a device model process, which maps and
// unmaps grant maps while it mprotects and madvises a long-lived one that
// another device keeps pinning; then the OOM reaper tries the process,
// which exits and closes the device. It returns the device and the reap.
func runGntdev(t *testing.T, legacy bool, bugs gntdevBugs) (*gntdevPriv, mmnotifier.ReapResult) {
	zone := newZone(t, 16<<20)
	mm := mmnotifier.NewMM(mmnotifier.WithZone(zone), mmnotifier.WithTask(3141, "qemu-dm"))
	priv, err := gntdevOpen(mm, zone, legacy, bugs)
	require.NoError(t, err)
	laddr, long := gntdevMap(t, priv, 16, mmnotifier.ProtReadWrite)

	var wg sync.WaitGroup
	wg.Add(2)
	krules.Go("qemu-dm/backend", func() {
		defer wg.Done()
		for range 20 {
			addr, m := gntdevMap(t, priv, 4, mmnotifier.ProtReadWrite)
			require.NoError(t, mm.Unmap(addr, 4*gfp.PageSize)) // gntdev_vma_close
			require.NoError(t, priv.ioctlUnmapGrantRef(m.index, m.count))
		}
	})
	krules.Go("i915/pin", func() { // get_user_pages on the grant pages
		defer wg.Done()
		for range 5 {
			long.pinned.Add(1)
			time.Sleep(time.Millisecond)
			long.pinned.Add(-1)
		}
	})
	if bugs != (gntdevBugs{}) { // serially, as runNouveau explains
		wg.Wait()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		long.pinned.Add(1) // the unmap waits for the pin to go
		require.NoError(t, mm.Protect(laddr, 4*gfp.PageSize, mmnotifier.ProtRead))
		for priv.unmapWait.Load() == 0 {
			time.Sleep(100 * time.Microsecond)
		}
		long.pinned.Add(-1)
		require.NoError(t, mm.Discard(laddr+8*gfp.PageSize, 4*gfp.PageSize))
	}()
	wg.Wait()
	// A grant map mapped at the end, for the OOM reaper to meet.
	_, last := gntdevMap(t, priv, 4, mmnotifier.ProtRead)
	reap := mm.OOMReap(context.Background(), mmnotifier.WithRetryDelay(0))
	// exit_mmap: the release unmaps every grant, then remove_vma closes
	// the VMAs left, the two pieces of the one Protect split among them.
	mm.Exit()
	priv.work.Wait() // the unmaps in flight hold references too
	require.EqualValues(t, 1, long.users.Load(), "the ioctl's reference is the last")
	require.EqualValues(t, 1, last.users.Load())
	priv.release() // exit_files
	mmnotifier.Synchronize()
	require.EqualValues(t, 22, priv.freed.Load(), "every grant map was freed")
	require.EqualValues(t, 16+20*4+4, priv.unmapped.Load(), "every grant was unmapped once")
	require.NotZero(t, priv.unmapWait.Load(), "an unmap waited for the pinned pages")
	return priv, reap
}

// The faithful port, in both its v6.12 interval form and its v4.19-v5.4
// list form, raises nothing; the OOM reaper's non-blockable invalidation
// of a grant mapping is refused every time and the reaper gives up.
func TestGntdevFaithful(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		krulestest.ResetDefault(t)
		rec := krulestest.Record(t)
		log := krulestest.CaptureLog(t)
		priv, reap := runGntdev(t, legacy, gntdevBugs{})
		require.Empty(t, rec.Reports())
		require.False(t, reap.Reaped)
		require.GreaterOrEqual(t, priv.refused.Load(), int64(mmnotifier.MaxOOMReapRetries))
		require.Contains(t, log.String(), "oom_reaper: unable to reap pid:3141 (qemu-dm)\n")
		// Interval notifiers fail without the list notifiers' log line.
		require.Equal(t, legacy, strings.Contains(log.String(), "gntdevMN).InvalidateRangeStart+0x0 callback failed with -11 in non-blockable context.\n"))
	}
}
