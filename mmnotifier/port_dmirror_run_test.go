package mmnotifier_test

import (
	"bytes"
	"context"
	"maps"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
)

const dmirrorPages = 64 // the first half keeps its contents, the second is discarded and written

type dmirrorRun struct {
	dm      *hmmDmirror
	mdevice *dmirrorDevice
	mm      *mmnotifier.MM
	addr    uint64
}

// runDmirror opens the device on a process that has written a pattern to
// its memory, then reads the unchanging half through the device (checking
// every byte), writes the other half through it and snapshots the whole,
// while the process mprotects, madvises, migrates and writes.
func runDmirror(t *testing.T, bugs dmirrorBugs) dmirrorRun {
	zone := newZone(t, 16<<20)
	mm := mmnotifier.NewMM(mmnotifier.WithZone(zone), mmnotifier.WithTask(1234, "hmm-tests"))
	addr, err := mm.Mmap(dmirrorPages*gfp.PageSize, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	pattern := make([]byte, dmirrorPages*gfp.PageSize)
	for i := range pattern {
		pattern[i] = byte(i / gfp.PageSize)
	}
	require.NoError(t, mm.Write(addr, pattern))
	const half = dmirrorPages / 2 * gfp.PageSize
	mid := addr + half

	mdevice := newDmirrorDevice()
	dm, err := dmirrorOpen(mdevice, mm, bugs)
	require.NoError(t, err)

	var wg sync.WaitGroup
	wg.Add(1)
	krules.Go("hmm-tests/device", func() {
		defer wg.Done()
		buf := make([]byte, half)
		perm := make([]byte, dmirrorPages)
		data := bytes.Repeat([]byte{0xa5}, 4*gfp.PageSize)
		for i := range 12 {
			require.NoError(t, dm.read(addr, buf))
			require.Equal(t, pattern[:half], buf, "the device reads what the process wrote")
			require.NoError(t, dm.snapshot(addr, perm))
			for _, p := range perm {
				require.Contains(t, []byte{dmirrorProtNone, dmirrorProtRead, dmirrorProtWrite}, p)
			}
			// The process may have made it read-only meanwhile:
			// hmm_range_fault's -EPERM for a write fault.
			if err := dm.write(mid+uint64(i%8)*4*gfp.PageSize, data); err != nil {
				require.ErrorIs(t, err, mmnotifier.ErrPerm)
			}
		}
	})
	if bugs != (dmirrorBugs{}) { // serially, as runNouveau explains
		wg.Wait()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 8 {
			a := addr + uint64(i%4)*16*gfp.PageSize
			require.NoError(t, mm.Protect(a, 16*gfp.PageSize, mmnotifier.ProtRead))
			require.NoError(t, dm.migrateToDevice(a, 16*gfp.PageSize)) // HMM_DMIRROR_MIGRATE_TO_DEV
			require.NoError(t, mm.Protect(a, 16*gfp.PageSize, mmnotifier.ProtReadWrite))
			_, err := mm.Migrate(addr, dmirrorPages*gfp.PageSize, "numa") // another owner: the mirror must drop its entries
			require.NoError(t, err)
			d := mid + uint64(i%4)*4*gfp.PageSize
			require.NoError(t, mm.Discard(d, 4*gfp.PageSize))
			require.NoError(t, mm.Write(d, make([]byte, gfp.PageSize)))
		}
	}()
	wg.Wait()
	require.NotZero(t, dm.invalidations.Load())
	require.NotZero(t, dm.faults.Load())
	require.NotZero(t, mdevice.calloc)
	return dmirrorRun{dm: dm, mdevice: mdevice, mm: mm, addr: addr}
}

// close is the process's exit: exit_mm, then exit_files closes the device.
func (run dmirrorRun) close() {
	run.mm.Exit()
	run.dm.release()
	mmnotifier.Synchronize()
}

// The faithful port raises nothing; afterwards a snapshot reads each
// page's protection as hmm-tests expects, the mirror holds only valid
// entries, and the OOM reaper's non-blockable invalidation is refused
// while the device holds the mirror's mutex.
func TestDmirrorFaithful(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	log := krulestest.CaptureLog(t)
	run := runDmirror(t, dmirrorBugs{})
	dm, mm, addr := run.dm, run.mm, run.addr

	// HMM_DMIRROR_SNAPSHOT: read-only, read-write, not present.
	require.NoError(t, mm.Protect(addr, 8*gfp.PageSize, mmnotifier.ProtRead))
	require.NoError(t, mm.Discard(addr+8*gfp.PageSize, gfp.PageSize))
	_, err := mm.Fault(addr+9*gfp.PageSize, true)
	require.NoError(t, err)
	perm := make([]byte, 10)
	require.NoError(t, dm.snapshot(addr, perm))
	require.Equal(t, []byte{1, 1, 1, 1, 1, 1, 1, 1, dmirrorProtNone, dmirrorProtWrite}, perm)

	require.NoError(t, dm.read(addr+10*gfp.PageSize, make([]byte, 4*gfp.PageSize)))
	// Every entry the mirror kept names the page the process has there
	// (looked up outside the mutex: MM.Lookup takes mmap_lock).
	dm.mutex.Lock()
	pt := maps.Clone(dm.pt)
	dm.mutex.Unlock()
	require.NotEmpty(t, pt)
	for idx, entry := range pt {
		pfn, ok := mm.Lookup(idx << gfp.PageShift)
		require.True(t, ok)
		require.Equal(t, pfn, entry>>1)
	}

	// The OOM reaper finds the mutex held: dmirror_interval_invalidate's
	// mutex_trylock fails, the invalidation fails with -EAGAIN, without
	// the list notifiers' log line. __oom_reap_task_mm goes on to the next
	// VMA after a failure, and the mprotect above split the mapping in
	// two, so every attempt is refused twice.
	dm.mutex.Lock()
	var reap mmnotifier.ReapResult
	done := make(chan struct{})
	krules.Go("oom_reaper", func() {
		defer close(done)
		reap = mm.OOMReap(context.Background(), mmnotifier.WithRetryDelay(0))
	})
	<-done
	dm.mutex.Unlock()
	require.False(t, reap.Reaped)
	require.EqualValues(t, 2*mmnotifier.MaxOOMReapRetries, dm.refused.Load())
	require.Contains(t, log.String(), "oom_reaper: unable to reap pid:1234 (hmm-tests)\n")
	require.NotContains(t, log.String(), "callback failed")
	run.close()
	require.Empty(t, dm.pt, "exit's MMU_NOTIFY_RELEASE cleared the mirror")
}
