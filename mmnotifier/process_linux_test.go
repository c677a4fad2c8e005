//go:build !krules_nolockdep

package mmnotifier_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
)

// Changes made behind the process's back, by a plain madvise or munmap,
// still reach the notifiers: the monitor reads their events and its worker
// invalidates.
func TestProcessForeignChangesAreInvalidated(t *testing.T) {
	krulestest.Check(t)
	p := newProcess(t, 8)
	rec := registerLog(t, p)
	mem := p.Bytes()
	mem[pg], mem[2*pg] = 1, 2

	require.NoError(t, unix.Madvise(mem[pg:3*pg], unix.MADV_DONTNEED))
	waitForeign(t, p, 1)
	starts, _ := rec.seen()
	require.Equal(t, []string{span(p, 1, 3, mmnotifier.EventClear)}, starts)
	require.Zero(t, mem[pg], "the page was dropped")

	_, _, e := unix.Syscall(unix.SYS_MUNMAP, uintptr(p.Addr()+6*pg), 2*pg, 0)
	require.Zero(t, e)
	waitForeign(t, p, 2)
	starts, ends := rec.seen()
	require.Equal(t, []string{span(p, 1, 3, mmnotifier.EventClear), span(p, 6, 8, mmnotifier.EventUnmap)}, starts)
	require.Equal(t, 2, ends)

	// The hole is known: the device may not fault it.
	sub, err := mmnotifier.InsertInterval(p.MM(), p.Addr(), p.Len(), lockingInterval{driverLock()})
	require.NoError(t, err)
	t.Cleanup(sub.Remove)
	r := mmnotifier.HMMRange{Notifier: sub, Start: p.Addr() + 6*pg, End: p.Addr() + 7*pg,
		PFNs: make([]uint64, 1), DefaultFlags: mmnotifier.HMMPFNReqFault}
	r.NotifierSeq = sub.ReadBegin()
	p.MM().MmapLock().RLock()
	err = mmnotifier.HMMRangeFault(&r)
	p.MM().MmapLock().RUnlock()
	require.ErrorIs(t, err, mmnotifier.ErrFault)
}

// The GFP_KERNEL-in-callback bug, when the first event is a plain madvise
// from code that knows nothing of the notifiers: the worker's invalidation
// reports it.
func TestProcessForeignFirstEventFindsTheCycle(t *testing.T) {
	rec := krulestest.Record(t)
	p := newProcess(t, 4)
	mu := driverLock()
	sub, err := mmnotifier.Register(p.MM(), lockingNotifier{mu})
	require.NoError(t, err)
	t.Cleanup(sub.Unregister)
	allocUnder(t, p.MM(), mu)
	require.NoError(t, unix.Madvise(p.Bytes()[:pg], unix.MADV_DONTNEED))
	waitForeign(t, p, 1)
	requireCircular(t, rec, "&drv->lock", "mmu_notifier_invalidate_range_start", "fs_reclaim")
}

// waitForeign waits for the monitor to have read n foreign events (the
// kernel lets the caller go as the monitor's read takes the event, before
// the monitor looks at it), then for their invalidations.
func waitForeign(t *testing.T, p *mmnotifier.Process, n int64) {
	t.Helper()
	require.Eventually(t, func() bool { return p.Stats().Foreign >= n }, 5*time.Second, 100*time.Microsecond)
	p.Sync()
}
