//go:build !krules_nolockdep

package mmnotifier_test

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

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
	r.DefaultFlags = 0
	r.NotifierSeq = sub.ReadBegin()
	p.MM().MmapLock().RLock()
	err = mmnotifier.HMMRangeFault(&r)
	p.MM().MmapLock().RUnlock()
	require.NoError(t, err)
	require.Equal(t, mmnotifier.HMMPFNError, r.PFNs[0], "and a snapshot reports it")
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

// The kernel releases a madvise caller when the monitor's read(2) takes
// the REMOVE event, and the monitor sleeps in that read on a thread of its
// own: the round trip needs no P. Here the caller keeps the only P while
// it waits in the kernel (a raw system call), so a monitor that had to be
// scheduled to read would never run.
func TestProcessForeignMadviseIsReadWithoutAP(t *testing.T) {
	krulestest.Check(t)
	p := newProcess(t, 2)
	p.Bytes()[pg] = 1 // present: the madvise has something to drop
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	require.NoError(t, p.Madvise(0, pg))
	require.Eventually(t, func() bool { return sleepsInUffdRead(t) }, 5*time.Second, time.Millisecond,
		"the monitor sleeps in read(2) between events")
	_, _, e := unix.RawSyscall(unix.SYS_MADVISE, uintptr(p.Addr()+pg), pg, unix.MADV_DONTNEED)
	require.Zero(t, e)
	waitForeign(t, p, 1)
	require.Zero(t, p.Bytes()[pg], "the page was dropped")
}

// sleepsInUffdRead reports whether a thread of this process is in read(2)
// on a userfaultfd, from /proc/self/task/*/syscall (the syscall number and
// arguments of a thread blocked in one), and requires that thread to be
// named uffd_monitor.
func sleepsInUffdRead(t *testing.T) bool {
	tasks, err := os.ReadDir("/proc/self/task")
	require.NoError(t, err)
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/syscall")
		if err != nil {
			t.Skipf("no /proc/PID/syscall: %v", err)
		}
		f := strings.Fields(string(b))
		if len(f) < 2 || f[0] != strconv.Itoa(unix.SYS_READ) {
			continue
		}
		fd, err := strconv.ParseUint(f[1], 0, 32)
		require.NoError(t, err)
		if link, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); link == "anon_inode:[userfaultfd]" {
			comm, err := os.ReadFile("/proc/self/task/" + task.Name() + "/comm")
			require.NoError(t, err)
			require.Equal(t, "uffd_monitor\n", string(comm), "the monitor's thread has its name")
			return true
		}
	}
	return false
}

// A hole is free address space: a mapping placed there since by someone
// else is neither replaced by Mmap or Mremap, which fail with EEXIST and
// change nothing, nor unmapped by Close.
func TestProcessLeavesAHoleTakenByAnotherMappingAlone(t *testing.T) {
	krulestest.Check(t)
	p, err := mmnotifier.NewProcess(4 * pg)
	if errors.Is(err, mmnotifier.ErrNoUserfaultfd) {
		t.Skip(err)
	}
	require.NoError(t, err)
	mem := p.Bytes()
	mem[0], mem[pg] = 1, 2
	require.NoError(t, p.Munmap(2*pg, pg))
	hole := unsafe.Pointer(&mem[2*pg])
	other, err := unix.MmapPtr(-1, 0, hole, pg, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE)
	require.NoError(t, err)
	require.Equal(t, hole, other)
	*(*byte)(other) = 42

	require.ErrorIs(t, p.Mmap(pg, 2*pg), unix.EEXIST)
	require.ErrorIs(t, p.Mremap(0, 2*pg, pg), unix.EEXIST)
	require.Equal(t, byte(42), *(*byte)(other), "the other mapping is untouched")
	require.Equal(t, []byte{1, 2}, []byte{mem[0], mem[pg]}, "nothing of the process's changed")
	require.NoError(t, p.Close())
	var vec [1]byte
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(other), pg, uintptr(unsafe.Pointer(&vec[0])))
	require.Zero(t, e, "still mapped after Close")
	require.Equal(t, byte(42), *(*byte)(other))
	require.NoError(t, unix.MunmapPtr(other, pg))
}

// waitForeign waits for the monitor to have read n foreign events (the
// kernel lets the caller go as the monitor's read takes the event, before
// the monitor looks at it), then for their invalidations.
func waitForeign(t *testing.T, p *mmnotifier.Process, n int64) {
	t.Helper()
	require.Eventually(t, func() bool { return p.Stats().Foreign >= n }, 5*time.Second, 100*time.Microsecond)
	p.Sync()
}

// An mremap behind the process's back (UFFD_EVENT_REMAP) is invalidated as
// move_page_tables does it: MMU_NOTIFY_UNMAP of the old range; the pages
// mapped at the destination before, and the old VMA, go with UNMAP events
// of their own.
func TestProcessForeignMremapInvalidatesTheOldRange(t *testing.T) {
	krulestest.Check(t)
	p := newProcess(t, 8)
	rec := registerLog(t, p)
	p.Bytes()[pg] = 1
	_, _, e := unix.Syscall6(unix.SYS_MREMAP, uintptr(p.Addr()+pg), pg, pg,
		unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, uintptr(p.Addr()+5*pg), 0)
	require.Zero(t, e)
	waitForeign(t, p, 3)
	starts, _ := rec.seen()
	require.ElementsMatch(t, []string{span(p, 5, 6, mmnotifier.EventUnmap), span(p, 1, 2, mmnotifier.EventUnmap),
		span(p, 1, 2, mmnotifier.EventUnmap)}, starts)
	require.Equal(t, byte(1), p.Bytes()[5*pg], "the page moved")
}

// A kernel access to a missing page, a read(2) into it, is a fault the
// userfaultfd resolves (the fault path's page, then the data), unless the
// userfaultfd handles user-mode faults only (UFFD_USER_MODE_ONLY, all an
// unprivileged process gets with vm.unprivileged_userfaultfd=0): then the
// system call fails with EFAULT (handle_userfault refuses a kernel fault).
func TestProcessKernelAccessToAMissingPage(t *testing.T) {
	krulestest.Check(t)
	p := newProcess(t, 2)
	require.Equal(t, fmt.Sprintf("uffd [%#x-%#x) of pid:42 (app)", p.Addr(), p.Addr()+2*pg), p.String())
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	_, err = w.Write([]byte("payload"))
	require.NoError(t, err)
	n, err := unix.Read(int(r.Fd()), p.Bytes()[pg:pg+7])
	if p.UserModeOnly() {
		require.ErrorIs(t, err, unix.EFAULT)
		return
	}
	require.NoError(t, err)
	require.Equal(t, 7, n)
	require.Equal(t, "payload", string(p.Bytes()[pg:pg+7]))
	require.EqualValues(t, 1, p.Stats().Faults, "the kernel's fault went through the fault path")
}
