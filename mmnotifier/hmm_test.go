package mmnotifier_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
)

// dmirror is lib/test_hmm.c's mirror device, ported: a device page table
// that mirrors an address space through one interval notifier covering it
// all, filled with hmm_range_fault under the collision-retry loop and
// zapped by the interval callback.
type dmirror struct {
	mm    *mmnotifier.MM
	mu    lockclass.Mutex   // dmirror->mutex
	pt    map[uint64]uint64 // device page table: address -> HMM entry (mu)
	sub   *mmnotifier.IntervalNotifier
	owner any // dmirror->mdevice, the owner of its own migrations

	retries, faults, zaps, refusals atomic.Int64
	// afterFault, if set, runs between hmm_range_fault and taking the
	// mutex: where a collision can happen.
	afterFault func()
	// noRetryCheck breaks the driver: it trusts hmm_range_fault's answer
	// without mmu_interval_read_retry.
	noRetryCheck bool
}

func newMirror(t testing.TB, mm *mmnotifier.MM) *dmirror {
	d := &dmirror{mm: mm, pt: map[uint64]uint64{}, owner: new(int)}
	d.mu.Init(lockclass.WithName("&dmirror->mutex"))
	// dmirror_fops_open: one interval for the whole address space.
	sub, err := mmnotifier.InsertInterval(mm, 0, ^uint64(0)&^(pg-1), d)
	require.NoError(t, err)
	d.sub = sub
	t.Cleanup(sub.Remove)
	return d
}

// Invalidate is dmirror_interval_invalidate.
func (d *dmirror) Invalidate(sub *mmnotifier.IntervalNotifier, r *mmnotifier.Range, cur uint64) bool {
	if r.Event == mmnotifier.EventMigrate && r.Owner == d.owner {
		return true
	}
	if r.Blockable() {
		d.mu.Lock()
	} else if !d.mu.TryLock() {
		d.refusals.Add(1)
		return false
	}
	d.zaps.Add(1)
	sub.SetSeq(cur)
	for addr := range d.pt { // dmirror_do_update
		if addr >= r.Start && addr < r.End {
			delete(d.pt, addr)
		}
	}
	d.mu.Unlock()
	return true
}

// fault is dmirror_fault/dmirror_range_fault: mirror [start, end), with
// write access, retrying until no invalidation collided.
func (d *dmirror) fault(start, end uint64) error {
	if !d.mm.GetNotZero() {
		return nil
	}
	defer d.mm.Put()
	r := mmnotifier.HMMRange{
		Notifier: d.sub, Start: start, End: end,
		PFNs:         make([]uint64, (end-start)/pg),
		DefaultFlags: mmnotifier.HMMPFNReqFault | mmnotifier.HMMPFNReqWrite,
	}
	timeout := time.Now().Add(time.Second) // HMM_RANGE_DEFAULT_TIMEOUT
	for {
		if time.Now().After(timeout) {
			return mmnotifier.ErrBusy
		}
		r.NotifierSeq = d.sub.ReadBegin()
		d.mm.MmapLock().RLock()
		err := mmnotifier.HMMRangeFault(&r)
		d.mm.MmapLock().RUnlock()
		if errors.Is(err, mmnotifier.ErrBusy) {
			d.retries.Add(1)
			continue
		}
		if err != nil {
			return err
		}
		if d.afterFault != nil {
			d.afterFault()
		}
		d.mu.Lock()
		if !d.noRetryCheck && d.sub.ReadRetry(r.NotifierSeq) {
			d.mu.Unlock()
			d.retries.Add(1)
			continue
		}
		break
	}
	d.faults.Add(1)
	// dmirror_do_fault: program the device page table, and (as a device
	// would) write through it, stamping each page with its address.
	for i, e := range r.PFNs {
		addr := start + uint64(i)*pg
		d.pt[addr] = e
		binary.LittleEndian.PutUint64(d.page(e).Bytes(), addr)
	}
	d.mu.Unlock()
	return nil
}

func (d *dmirror) page(e uint64) *gfp.Page {
	return d.mm.Zone().PageByPFN(e &^ mmnotifier.HMMPFNFlags)
}

// check verifies, under the mutex, that every mirrored page is still the
// page the device stamped: allocated and carrying its address. A mapping
// the invalidation should have zapped points at a freed page, or at a page
// reused and zeroed or stamped for another address.
func (d *dmirror) check() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for addr, e := range d.pt {
		p := d.page(e)
		if p == nil || !p.InUse() {
			return fmt.Errorf("stale mapping: %#x -> pfn %#x, which is free", addr, e&^mmnotifier.HMMPFNFlags)
		}
		if got := binary.LittleEndian.Uint64(p.Bytes()); got != addr {
			return fmt.Errorf("stale mapping: %#x -> pfn %#x, which now holds %#x", addr, e&^mmnotifier.HMMPFNFlags, got)
		}
	}
	return nil
}

func (d *dmirror) size() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pt)
}

func TestMirrorRetriesAfterACollision(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	d := newMirror(t, mm)
	addr, err := mm.Mmap(8*pg, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	d.afterFault = func() {
		d.afterFault = nil
		require.NoError(t, mm.Discard(addr, 8*pg)) // the pages just read are gone
	}
	require.NoError(t, d.fault(addr, addr+8*pg))
	require.EqualValues(t, 1, d.retries.Load(), "the collision was seen and the read retried")
	require.Equal(t, 8, d.size())
	require.NoError(t, d.check())
	for a := addr; a < addr+8*pg; a += pg {
		pfn, ok := mm.Lookup(a)
		require.True(t, ok)
		require.Equal(t, pfn, d.pt[a]&^mmnotifier.HMMPFNFlags)
	}
}

// The check is able to fail: a driver that skips read_retry mirrors the
// pages a collision freed.
func TestMirrorWithoutReadRetryExposesStaleMappings(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	d := newMirror(t, mm)
	d.noRetryCheck = true
	addr, err := mm.Mmap(8*pg, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	d.afterFault = func() {
		d.afterFault = nil
		require.NoError(t, mm.Discard(addr, 8*pg))
	}
	require.NoError(t, d.fault(addr, addr+8*pg))
	err = d.check()
	require.Error(t, err)
	require.Contains(t, err.Error(), "stale mapping")
}

// The port of test_hmm's concurrency: mirrors fill while other threads
// discard, protect, migrate, reap-style invalidate and reclaim; the
// mirror must never hold a page the address space no longer maps.
func TestMirrorNeverExposesAStaleMapping(t *testing.T) {
	krulestest.Check(t)
	z := newZone(t, 8<<20)
	mm := newMM(t, mmnotifier.WithZone(z))
	d := newMirror(t, mm)
	const npages = 256
	addr, err := mm.Mmap(npages*pg, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	chunk := func(rng *rand.Rand) (uint64, uint64) {
		i := rng.IntN(npages - 16)
		return addr + uint64(i)*pg, addr + uint64(i+1+rng.IntN(16))*pg
	}

	deadline := time.Now().Add(300 * time.Millisecond)
	var wg sync.WaitGroup
	var failed atomic.Value
	fail := func(err error) {
		if err != nil {
			failed.CompareAndSwap(nil, err)
		}
	}
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for time.Now().Before(deadline) && failed.Load() == nil {
				s, e := chunk(rng)
				// ErrPerm: a write fault while the CPU side has the range read-only.
				if err := d.fault(s, e); err != nil && !errors.Is(err, mmnotifier.ErrPerm) {
					fail(err)
				}
				fail(d.check())
			}
		}()
	}
	wg.Add(1)
	go func() { // the CPU side: discard, protect, migrate
		defer wg.Done()
		rng := rand.New(rand.NewPCG(7, 7))
		for time.Now().Before(deadline) && failed.Load() == nil {
			s, e := chunk(rng)
			switch rng.IntN(4) {
			case 0, 1:
				fail(mm.Discard(s, e-s))
			case 2:
				fail(mm.Protect(s, e-s, mmnotifier.ProtRead))
				fail(mm.Protect(s, e-s, mmnotifier.ProtReadWrite))
			case 3:
				_, err := mm.Migrate(s, e-s, nil)
				fail(err)
			}
		}
	}()
	wg.Add(1)
	go func() { // reaper-style non-blockable invalidations, and reclaim
		defer wg.Done()
		rng := rand.New(rand.NewPCG(9, 9))
		for time.Now().Before(deadline) && failed.Load() == nil {
			s, e := chunk(rng)
			r := mmnotifier.NewRange(mm, mmnotifier.EventUnmap, s, e)
			mm.MmapLock().RLock()
			if mmnotifier.InvalidateRangeStartNonblock(&r) == nil {
				mmnotifier.InvalidateRangeEnd(&r)
			}
			mm.MmapLock().RUnlock()
			z.Reclaim(8, gfp.Kernel)
		}
	}()
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	require.NoError(t, d.check())
	t.Logf("%d mirror faults, %d retries, %d invalidations, %d refused", d.faults.Load(), d.retries.Load(), d.zaps.Load(), d.refusals.Load())
	require.Positive(t, d.faults.Load())
	require.Positive(t, d.zaps.Load())

	require.NoError(t, mm.Unmap(addr, npages*pg))
	require.Zero(t, d.size(), "unmapping everything zaps the whole mirror")
}

// hmm_range_fault, entry by entry: a present writable page is valid and
// writable; a write-protected one (after ClearSoftDirty) is valid but not
// writable on a read request, and on a write request without a fault
// request (hmm_pte_need_fault asks nothing then), and is write-faulted on
// a write fault request; a hole is HMMPFNError without a fault request
// (hmm_vma_walk_hole with no VMA) and fails with ErrFault (its entry
// HMMPFNError) with one; a PROT_NONE mapping is the same (hmm_vma_walk_test);
// a write fault in a read-only mapping fails with ErrPerm (hmm_vma_fault);
// and a collision since ReadBegin fails the walk with ErrBusy.
func TestHMMRangeFaultEntries(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	d := newMirror(t, mm)
	addr := mapTouched(t, mm, 2) // two present, writable pages
	require.NoError(t, mm.Unmap(addr+pg, pg))
	// addr: present; addr+pg: a hole.
	walk := func(start, end, flags uint64) ([]uint64, error) {
		r := mmnotifier.HMMRange{Notifier: d.sub, Start: start, End: end,
			PFNs: make([]uint64, (end-start)/pg), DefaultFlags: flags}
		r.NotifierSeq = d.sub.ReadBegin()
		mm.MmapLock().RLock()
		defer mm.MmapLock().RUnlock()
		err := mmnotifier.HMMRangeFault(&r)
		return r.PFNs, err
	}
	valid, write := mmnotifier.HMMPFNValid, mmnotifier.HMMPFNWrite
	pfns, err := walk(addr, addr+2*pg, 0)
	require.NoError(t, err)
	require.Equal(t, valid|write, pfns[0]&(valid|write), "present and writable")
	for _, bad := range [][2]uint64{{addr, addr}, {addr + 1, addr + pg}, {addr, addr + pg + 1}} {
		_, err = walk(bad[0], bad[1], 0)
		require.ErrorIs(t, err, mmnotifier.ErrInvalid, "[%#x, %#x)", bad[0], bad[1])
	}
	r := mmnotifier.HMMRange{Notifier: d.sub, Start: addr, End: addr + 2*pg, PFNs: make([]uint64, 1)}
	r.NotifierSeq = d.sub.ReadBegin()
	require.ErrorIs(t, func() error {
		mm.MmapLock().RLock()
		defer mm.MmapLock().RUnlock()
		return mmnotifier.HMMRangeFault(&r)
	}(), mmnotifier.ErrInvalid, "PFNs too short")
	require.Equal(t, mmnotifier.HMMPFNError, pfns[1], "a hole, not asked to fault")

	pfns, err = walk(addr, addr+2*pg, mmnotifier.HMMPFNReqFault)
	require.ErrorIs(t, err, mmnotifier.ErrFault)
	require.Equal(t, mmnotifier.HMMPFNError, pfns[1])

	mm.ClearSoftDirty() // write-protects the present page
	pfns, err = walk(addr, addr+pg, mmnotifier.HMMPFNReqFault)
	require.NoError(t, err)
	require.Equal(t, valid, pfns[0]&(valid|write), "write-protected: valid, not writable")
	pfns, err = walk(addr, addr+pg, mmnotifier.HMMPFNReqWrite)
	require.NoError(t, err)
	require.Equal(t, valid, pfns[0]&(valid|write), "a write request without a fault request faults nothing")
	pfns, err = walk(addr, addr+pg, mmnotifier.HMMPFNReqFault|mmnotifier.HMMPFNReqWrite)
	require.NoError(t, err)
	require.Equal(t, valid|write, pfns[0]&(valid|write), "the write request faulted it writable")

	require.NoError(t, mm.Protect(addr, pg, mmnotifier.ProtRead))
	_, err = walk(addr, addr+pg, mmnotifier.HMMPFNReqFault|mmnotifier.HMMPFNReqWrite)
	require.ErrorIs(t, err, mmnotifier.ErrPerm, "a write fault in a read-only mapping")
	pfns, err = walk(addr, addr+pg, mmnotifier.HMMPFNReqFault)
	require.NoError(t, err)
	require.Equal(t, valid, pfns[0]&(valid|write), "read-only: valid, not writable")
	require.NoError(t, mm.Protect(addr, pg, mmnotifier.ProtNone))
	pfns, err = walk(addr, addr+pg, 0)
	require.NoError(t, err)
	require.Equal(t, mmnotifier.HMMPFNError, pfns[0], "PROT_NONE, its page present: an error entry")
	_, err = walk(addr, addr+pg, mmnotifier.HMMPFNReqFault)
	require.ErrorIs(t, err, mmnotifier.ErrFault)
	require.NoError(t, mm.Protect(addr, pg, mmnotifier.ProtReadWrite))

	// A page mapped but not present: 0, and no fault without a request.
	require.NoError(t, mm.Discard(addr, pg))
	pfns, err = walk(addr, addr+pg, 0)
	require.NoError(t, err)
	require.Zero(t, pfns[0])
	_, present := mm.Lookup(addr)
	require.False(t, present)

	// A collision: the range is invalidated after ReadBegin.
	r = mmnotifier.HMMRange{Notifier: d.sub, Start: addr, End: addr + pg, PFNs: make([]uint64, 1)}
	r.NotifierSeq = d.sub.ReadBegin()
	require.NoError(t, mm.Discard(addr, pg))
	mm.MmapLock().RLock()
	err = mmnotifier.HMMRangeFault(&r)
	mm.MmapLock().RUnlock()
	require.ErrorIs(t, err, mmnotifier.ErrBusy)
}

// hmm_vma_fault turns every failure of handle_mm_fault (VM_FAULT_ERROR,
// VM_FAULT_OOM included) into -EFAULT: a page that cannot be allocated
// fails the walk with ErrFault, not with the allocator's error, and the
// next walk faults it in.
func TestHMMRangeFaultOfAPageThatCannotBeHadIsEFAULT(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	d := newMirror(t, mm)
	addr, err := mm.Mmap(pg, mmnotifier.ProtReadWrite)
	require.NoError(t, err)
	fail := gfp.NewFaultAttr(100, 1)
	fail.IgnoreGFPWait, fail.IgnoreGFPHighmem, fail.MinOrder, fail.Verbose = false, false, 0, 0
	mm.Zone().InjectPageAllocFaults(fail)
	defer mm.Zone().InjectPageAllocFaults(nil)
	walk := func() ([]uint64, error) {
		r := mmnotifier.HMMRange{Notifier: d.sub, Start: addr, End: addr + pg,
			PFNs: make([]uint64, 1), DefaultFlags: mmnotifier.HMMPFNReqFault}
		r.NotifierSeq = d.sub.ReadBegin()
		mm.MmapLock().RLock()
		defer mm.MmapLock().RUnlock()
		err := mmnotifier.HMMRangeFault(&r)
		return r.PFNs, err
	}
	pfns, err := walk()
	require.Equal(t, 1, fail.Failures())
	require.ErrorIs(t, err, mmnotifier.ErrFault)
	require.NotErrorIs(t, err, gfp.ErrNoMemory)
	require.Equal(t, mmnotifier.HMMPFNError, pfns[0])
	pfns, err = walk() // fail_page_alloc's one failure is spent
	require.NoError(t, err)
	require.Equal(t, mmnotifier.HMMPFNValid, pfns[0]&mmnotifier.HMMPFNValid)
}
