package mmnotifier_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
)

// vmDev is a device whose mappings record their operations, with what
// each callback saw of the address space.
type vmDev struct {
	mm *mmnotifier.MM
	// onMmap runs inside the mmap handler; its error fails the mapping.
	onMmap func(v *mmnotifier.VMA) error

	mu     sync.Mutex
	events []string
	first  *mmnotifier.VMA // the VMA the mmap handler saw
	seen   map[*mmnotifier.VMA]string
	// writeLocked is false once a callback ran without mmap_lock held for
	// writing; rss is RSS at each Close.
	writeLocked bool
	rss         []int64
	closes      int
	bad         []string // callbacks for a VMA in the wrong state
}

// newVMDev returns a device for mm; the test fails if an Open or Close
// comes for a VMA in the wrong state.
func newVMDev(t *testing.T, mm *mmnotifier.MM) *vmDev {
	d := &vmDev{mm: mm, seen: map[*mmnotifier.VMA]string{}, writeLocked: true}
	t.Cleanup(func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		require.Empty(t, d.bad)
	})
	return d
}

// writeHeld reports whether mm's mmap_lock is held for writing, by
// whether another goroutine fails to take it for reading.
func writeHeld(mm *mmnotifier.MM) bool {
	got := make(chan bool)
	go func() {
		ok := mm.MmapLock().TryRLock()
		if ok {
			mm.MmapLock().RUnlock()
		}
		got <- ok
	}()
	return !<-got
}

func (d *vmDev) note(what string, v *mmnotifier.VMA) {
	w := writeHeld(d.mm)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writeLocked = d.writeLocked && w
	d.events = append(d.events, fmt.Sprintf("%s [%d,%d)", what, (v.Start()-mmBase)/pg, (v.End()-mmBase)/pg))
}

// mmBase is where the first mapping of an empty address space goes.
const mmBase = 1 << 32

func (d *vmDev) mmap(v *mmnotifier.VMA) (mmnotifier.VMOps, error) {
	d.note("mmap", v)
	if d.onMmap != nil {
		if err := d.onMmap(v); err != nil {
			return nil, err
		}
	}
	d.mu.Lock()
	d.first = v
	d.seen[v] = "mmap"
	d.mu.Unlock()
	return d, nil
}

func (d *vmDev) Open(v *mmnotifier.VMA) {
	d.note("open", v)
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.seen[v]; s != "" {
		d.bad = append(d.bad, "Open of a VMA already "+s)
	}
	d.seen[v] = "open"
}

func (d *vmDev) Close(v *mmnotifier.VMA) {
	d.note("close", v)
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.seen[v]; s != "mmap" && s != "open" {
		d.bad = append(d.bad, "Close of a VMA not open: "+s)
	}
	d.seen[v] = "closed"
	d.closes++
	d.rss = append(d.rss, d.mm.RSS())
}

func (d *vmDev) take() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.events
	d.events = nil
	return e
}

// Splits by mprotect and munmap open the pieces outside the range, removal
// closes each VMA once, exit closes the rest in address order, and the VMA
// the driver's mmap saw is the one that keeps the inside of each range.
func TestVMOpsBalancedAcrossSplits(t *testing.T) {
	mm := newMM(t)
	d := newVMDev(t, mm)
	addr, err := mm.MmapDevice(8*pg, mmnotifier.ProtReadWrite, d.mmap)
	require.NoError(t, err)
	require.EqualValues(t, mmBase, addr)
	require.Equal(t, []string{"mmap [0,8)"}, d.take())

	require.NoError(t, mm.Protect(addr+2*pg, 2*pg, mmnotifier.ProtRead))
	require.Equal(t, []string{"open [0,2)", "open [4,8)"}, d.take(), "new_below at the start, above at the end")
	require.Equal(t, addr+2*pg, d.first.Start())
	require.Equal(t, addr+4*pg, d.first.End())

	// Back to read-write: VMAs with operations do not merge, and a range
	// already at its protection is not split.
	require.NoError(t, mm.Protect(addr+2*pg, 2*pg, mmnotifier.ProtReadWrite))
	require.NoError(t, mm.Protect(addr+pg, 6*pg, mmnotifier.ProtReadWrite))
	require.Empty(t, d.take())

	require.NoError(t, mm.Unmap(addr+3*pg, 3*pg))
	require.Equal(t, []string{"open [2,3)", "open [6,8)", "close [3,4)", "close [4,6)"}, d.take())
	require.Equal(t, "closed", d.seen[d.first], "the mmap'd VMA kept [3,4)")

	mm.Exit()
	require.Equal(t, []string{"close [0,2)", "close [2,3)", "close [6,8)"}, d.take())
	require.Len(t, d.seen, 5)
	for v, s := range d.seen {
		require.Equal(t, "closed", s, "every VMA closed once: %p", v)
	}
	require.Equal(t, 4+1, d.closes, "one Close for each Open and one for the mmap")
	require.True(t, d.writeLocked, "mmap, Open and Close run with mmap_lock held for writing")
}

// Unmap closes after its invalidation has ended and the range's pages are
// freed (remove_vma after vms_clear_ptes); exit closes after the
// notifiers' release and the final unmap, with every page freed.
func TestVMOpsCloseComesAfterTheUnmap(t *testing.T) {
	mm, rec := recordedMM(t)
	d := newVMDev(t, mm)
	d.onMmap = func(v *mmnotifier.VMA) error { // populate, as map_grant_pages
		for a := v.Start(); a < v.End(); a += pg {
			if _, err := mm.FaultLocked(a, true); err != nil {
				return err
			}
		}
		return nil
	}
	addr, err := mm.MmapDevice(4*pg, mmnotifier.ProtReadWrite, d.mmap)
	require.NoError(t, err)
	require.EqualValues(t, 4, mm.RSS())
	other := mapTouched(t, mm, 1)
	require.Equal(t, addr+4*pg, other, "no gap between the two")

	require.NoError(t, mm.Unmap(addr+2*pg, 2*pg))
	require.Equal(t, []string{"n.start", "n.end"}, rec.whats())
	require.Equal(t, []string{"mmap [0,4)", "open [0,2)", "close [2,4)"}, d.take())
	require.Equal(t, []int64{2 + 1}, d.rss, "the unmapped pages were freed before Close")

	mm.Exit()
	require.Equal(t, []string{"n.release"}, rec.whats(), "release unhashes the notifier before the final unmap")
	require.Equal(t, []string{"close [0,2)"}, d.take())
	require.Equal(t, []int64{3, 0}, d.rss)
	require.True(t, d.writeLocked)
}

// An anonymous mapping next to a device mapping, at the same protection,
// does not merge into it.
func TestVMOpsAreNotMerged(t *testing.T) {
	mm := newMM(t)
	d := newVMDev(t, mm)
	addr, err := mm.MmapDevice(2*pg, mmnotifier.ProtRead, d.mmap)
	require.NoError(t, err)
	anon, err := mm.Mmap(2*pg, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	require.Equal(t, addr+2*pg, anon)
	require.NoError(t, mm.Protect(addr, 4*pg, mmnotifier.ProtReadWrite))
	require.NoError(t, mm.Protect(addr, 4*pg, mmnotifier.ProtRead))
	mm.Exit()
	require.Equal(t, []string{"mmap [0,2)", "close [0,2)"}, d.take())
}

// The OOM reaper unmaps the pages of a device mapping but closes nothing;
// exit does.
func TestVMOpsOOMReaperDoesNotClose(t *testing.T) {
	mm := newMM(t)
	d := newVMDev(t, mm)
	addr, err := mm.MmapDevice(2*pg, mmnotifier.ProtReadWrite, d.mmap)
	require.NoError(t, err)
	_, err = mm.Fault(addr, true)
	require.NoError(t, err)
	log := krulestest.CaptureLog(t)
	res := mm.OOMReap(context.Background(), mmnotifier.WithRetryDelay(0))
	require.True(t, res.Reaped)
	require.EqualValues(t, 1, res.Freed)
	require.Contains(t, log.String(), "oom_reaper: reaped process 42 (victim)")
	require.Equal(t, []string{"mmap [0,2)"}, d.take())
	mm.Exit()
	require.Equal(t, []string{"close [0,2)"}, d.take())
}

// A failed mmap handler leaves nothing mapped: what it faulted in is
// unmapped under an UNMAP invalidation and freed, the address is free
// again, and nothing is closed.
func TestMmapDeviceFailureUnmapsWithoutClose(t *testing.T) {
	mm, rec := recordedMM(t)
	d := newVMDev(t, mm)
	errNoDev := errors.New("ENODEV")
	d.onMmap = func(v *mmnotifier.VMA) error {
		_, err := mm.FaultLocked(v.Start()+pg, true)
		require.NoError(t, err)
		return errNoDev
	}
	_, err := mm.MmapDevice(3*pg, mmnotifier.ProtReadWrite, d.mmap)
	require.ErrorIs(t, err, errNoDev)
	require.Equal(t, []string{"mmap [0,3)"}, d.take())
	calls := rec.take()
	require.Len(t, calls, 2)
	require.Equal(t, mmnotifier.EventUnmap, calls[0].event)
	require.Equal(t, [2]uint64{mmBase, mmBase + 3*pg}, [2]uint64{calls[0].start, calls[0].end})
	require.True(t, calls[0].blockable)
	require.Zero(t, mm.RSS())
	addr, err := mm.Mmap(pg, mmnotifier.ProtRead)
	require.NoError(t, err)
	require.EqualValues(t, mmBase, addr)
	_, err = mm.Fault(mmBase+pg, false)
	require.ErrorIs(t, err, mmnotifier.ErrFault, "the failed mapping is gone")

	_, err = mm.MmapDevice(0, mmnotifier.ProtRead, d.mmap)
	require.ErrorIs(t, err, mmnotifier.ErrInvalid)
	mm.Exit()
	_, err = mm.MmapDevice(pg, mmnotifier.ProtRead, d.mmap)
	require.ErrorIs(t, err, mmnotifier.ErrInvalid, "no users left")
	require.Empty(t, d.take(), "mmap is not called for a mapping refused")
}
