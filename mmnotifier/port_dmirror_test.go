package mmnotifier_test

// A port of the kernel's HMM test driver, dmirror (lib/test_hmm.c, v6.12),
// to krules' public API: one interval notifier over the whole address
// space, device reads and writes through a mirror page table filled by
// hmm_range_fault, snapshots through a transient interval notifier, and
// migration "to the device".

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
)

const (
	dptXATagWrite = 1 << 0 // DPT_XA_TAG_WRITE, in the entry's low bits beside the pfn

	dmirrorProtError = 0xff // HMM_DMIRROR_PROT_ERROR
	dmirrorProtNone  = 0x00 // HMM_DMIRROR_PROT_NONE
	dmirrorProtRead  = 0x01 // HMM_DMIRROR_PROT_READ
	dmirrorProtWrite = 0x02 // HMM_DMIRROR_PROT_WRITE

	dmirrorChunk = 64 // the pfns[64] of dmirror_fault and dmirror_snapshot
)

// errNoEnt is -ENOENT: the mirror has no entry for a page.
var errNoEnt = errors.New("ENOENT")

// dmirrorBugs selects the deliberate mistakes of a broken port.
type dmirrorBugs struct {
	xaStoreKernel   bool // dmirror_do_fault stores into the XArray with GFP_KERNEL under dmirror->mutex
	faultUnderMutex bool // dmirror_range_fault calls hmm_range_fault under dmirror->mutex
}

// dmirrorDevice is struct dmirror_device: its address is the pgmap owner
// its migrations carry.
type dmirrorDevice struct {
	lock   lockclass.SpinLock // mdevice->lock
	calloc int64              // under lock
}

// hmmDmirror is struct dmirror, one open file of the device.
type hmmDmirror struct {
	mdevice  *dmirrorDevice
	notifier *mmnotifier.IntervalNotifier
	mutex    lockclass.Mutex
	pt       map[uint64]uint64 // the XArray: page index -> pfn<<1 | DPT_XA_TAG_WRITE
	bugs     dmirrorBugs

	invalidations atomic.Int64
	refused       atomic.Int64 // non-blockable invalidations that found the mutex held
	faults        atomic.Int64 // cmd->faults
}

func newDmirrorDevice() *dmirrorDevice {
	d := &dmirrorDevice{}
	d.lock.Init(lockclass.WithName("&mdevice->lock"))
	return d
}

// dmirrorOpen is dmirror_fops_open: mirror the whole address space.
func dmirrorOpen(mdevice *dmirrorDevice, mm *mmnotifier.MM, bugs dmirrorBugs) (*hmmDmirror, error) {
	dm := &hmmDmirror{mdevice: mdevice, pt: map[uint64]uint64{}, bugs: bugs}
	dm.mutex.Init(lockclass.WithName("&dmirror->mutex"))
	var err error
	dm.notifier, err = mmnotifier.InsertInterval(mm, 0, ^uint64(0)&^(gfp.PageSize-1), dm)
	if err != nil {
		return nil, err
	}
	return dm, nil
}

// release is dmirror_fops_release.
func (dm *hmmDmirror) release() {
	dm.notifier.Remove()
}

// doUpdate is dmirror_do_update: the XArray holds no page references, so
// clearing the entries is all it takes. The notifier covers the whole
// address space and exit invalidates [0, ULONG_MAX), so a range wider than
// the mirror's entries walks the entries (xa_for_each_range visits only
// those) rather than every index.
func (dm *hmmDmirror) doUpdate(start, end uint64) {
	if end-start > uint64(len(dm.pt))*gfp.PageSize {
		for pfn := range dm.pt {
			if a := pfn << gfp.PageShift; a >= start && a < end {
				delete(dm.pt, pfn)
			}
		}
		return
	}
	for pfn := start >> gfp.PageShift; pfn < end>>gfp.PageShift; pfn++ {
		delete(dm.pt, pfn)
	}
}

// Invalidate is dmirror_interval_invalidate.
func (dm *hmmDmirror) Invalidate(sub *mmnotifier.IntervalNotifier, r *mmnotifier.Range, curSeq uint64) bool {
	// Device-private pages are invalidated by the migration itself.
	if r.Event == mmnotifier.EventMigrate && r.Owner == dm.mdevice {
		return true
	}
	if r.Blockable() {
		dm.mutex.Lock()
	} else if !dm.mutex.TryLock() {
		dm.refused.Add(1)
		return false
	}
	sub.SetSeq(curSeq)
	dm.invalidations.Add(1)
	dm.doUpdate(r.Start, r.End)
	dm.mutex.Unlock()
	return true
}

// xaStore is xa_store: it may allocate a node with gfp.
func (dm *hmmDmirror) xaStore(pfn, entry uint64, flags gfp.Flags) {
	gfp.MightAlloc(flags)
	dm.pt[pfn] = entry
}

// doFault is dmirror_do_fault, under dmirror->mutex.
func (dm *hmmDmirror) doFault(r *mmnotifier.HMMRange) error {
	flags := gfp.Atomic
	if dm.bugs.xaStoreKernel {
		flags = gfp.Kernel
	}
	for i, e := range r.PFNs {
		if e&mmnotifier.HMMPFNError != 0 || e&mmnotifier.HMMPFNValid == 0 {
			panic("dmirror_do_fault: hmm_range_fault populated no page") // the kernel's WARN_ONs
		}
		entry := (e &^ mmnotifier.HMMPFNFlags) << 1
		if e&mmnotifier.HMMPFNWrite != 0 {
			entry |= dptXATagWrite
		} else if r.DefaultFlags&mmnotifier.HMMPFNReqWrite != 0 {
			return mmnotifier.ErrFault
		}
		dm.xaStore(r.Start>>gfp.PageShift+uint64(i), entry, flags)
	}
	return nil
}

// rangeFault is dmirror_range_fault.
func (dm *hmmDmirror) rangeFault(r *mmnotifier.HMMRange) error {
	mm := dm.notifier.MM()
	timeout := time.Now().Add(hmmRangeTimeout)
	for {
		if time.Now().After(timeout) {
			return mmnotifier.ErrBusy
		}
		r.NotifierSeq = r.Notifier.ReadBegin()
		if dm.bugs.faultUnderMutex {
			dm.mutex.Lock()
		}
		mm.MmapLock().RLock()
		err := mmnotifier.HMMRangeFault(r)
		mm.MmapLock().RUnlock()
		if err != nil {
			if dm.bugs.faultUnderMutex {
				dm.mutex.Unlock()
			}
			if errors.Is(err, mmnotifier.ErrBusy) {
				continue
			}
			return err
		}
		if !dm.bugs.faultUnderMutex {
			dm.mutex.Lock()
		}
		if r.Notifier.ReadRetry(r.NotifierSeq) {
			dm.mutex.Unlock()
			continue
		}
		break
	}
	err := dm.doFault(r)
	dm.mutex.Unlock()
	return err
}

// fault is dmirror_fault.
func (dm *hmmDmirror) fault(start, end uint64, write bool) error {
	mm := dm.notifier.MM()
	var pfns [dmirrorChunk]uint64
	r := mmnotifier.HMMRange{Notifier: dm.notifier, DefaultFlags: mmnotifier.HMMPFNReqFault}
	if write {
		r.DefaultFlags |= mmnotifier.HMMPFNReqWrite
	}
	if !mm.GetNotZero() {
		return nil
	}
	defer mm.Put()
	for addr := start; addr < end; addr = r.End {
		r.Start = addr
		r.End = min(addr+dmirrorChunk*gfp.PageSize, end)
		r.PFNs = pfns[:(r.End-r.Start)>>gfp.PageShift]
		if err := dm.rangeFault(&r); err != nil {
			return err
		}
	}
	return nil
}

// page returns the memory of the page an entry names.
func (dm *hmmDmirror) page(entry uint64) []byte {
	return dm.notifier.MM().Zone().PageByPFN(entry >> 1).Bytes()
}

// doRead is dmirror_do_read, under dmirror->mutex: it copies what the
// device sees into buf and returns the pages copied.
func (dm *hmmDmirror) doRead(start, end uint64, buf []byte) (int, error) {
	n := 0
	for pfn := start >> gfp.PageShift; pfn < end>>gfp.PageShift; pfn++ {
		entry, ok := dm.pt[pfn]
		if !ok {
			return n, errNoEnt
		}
		copy(buf[n*gfp.PageSize:], dm.page(entry))
		n++
	}
	return n, nil
}

// read is dmirror_read: read through the mirror, faulting what it lacks.
func (dm *hmmDmirror) read(addr uint64, buf []byte) error {
	start, end := addr, addr+uint64(len(buf))
	done := 0
	for {
		dm.mutex.Lock()
		n, err := dm.doRead(start, end, buf[done*gfp.PageSize:])
		dm.mutex.Unlock()
		done += n
		if !errors.Is(err, errNoEnt) {
			return err
		}
		start = addr + uint64(done)*gfp.PageSize
		if err := dm.fault(start, end, false); err != nil {
			return err
		}
		dm.faults.Add(1)
	}
}

// doWrite is dmirror_do_write, under dmirror->mutex.
func (dm *hmmDmirror) doWrite(start, end uint64, data []byte) (int, error) {
	n := 0
	for pfn := start >> gfp.PageShift; pfn < end>>gfp.PageShift; pfn++ {
		entry, ok := dm.pt[pfn]
		if !ok || entry&dptXATagWrite == 0 {
			return n, errNoEnt
		}
		copy(dm.page(entry), data[n*gfp.PageSize:(n+1)*gfp.PageSize])
		n++
	}
	return n, nil
}

// write is dmirror_write.
func (dm *hmmDmirror) write(addr uint64, data []byte) error {
	start, end := addr, addr+uint64(len(data))
	done := 0
	for {
		dm.mutex.Lock()
		n, err := dm.doWrite(start, end, data[done*gfp.PageSize:])
		dm.mutex.Unlock()
		done += n
		if !errors.Is(err, errNoEnt) {
			return err
		}
		start = addr + uint64(done)*gfp.PageSize
		if err := dm.fault(start, end, true); err != nil {
			return err
		}
		dm.faults.Add(1)
	}
}

// migrateToDevice is dmirror_migrate_to_device for system memory:
// migrate_vma_setup/pages with the device as pgmap owner (whose
// invalidation Invalidate skips), then dmirror_migrate_finalize_and_map.
func (dm *hmmDmirror) migrateToDevice(addr, length uint64) error {
	mm := dm.notifier.MM()
	if !mm.GetNotZero() {
		return mmnotifier.ErrInvalid
	}
	defer mm.Put()
	for a := addr; a < addr+length; a += dmirrorChunk * gfp.PageSize {
		n := min(dmirrorChunk*gfp.PageSize, addr+length-a)
		// migrate_vma_setup holds mmap_lock from setup to finalize, so no
		// other invalidation can fall between the migration and the
		// mapping of its destination pages; MM.Migrate takes mmap_lock
		// itself. The sequence taken before it catches whatever falls in
		// between (the migration's own invalidation is skipped and so
		// does not move it).
		seq := dm.notifier.ReadBegin()
		moved, err := mm.Migrate(a, n, dm.mdevice)
		if err != nil {
			return err
		}
		dm.mdevice.lock.Lock() // dmirror_devmem_alloc_page
		dm.mdevice.calloc += int64(moved)
		dm.mdevice.lock.Unlock()
		dm.finalizeAndMap(a, a+n, seq)
	}
	return nil
}

// finalizeAndMap is dmirror_migrate_finalize_and_map. MM.Migrate returns
// no destination array (migrate_vma's dst), so the new frames are looked
// up, before the mutex since MM.Lookup takes mmap_lock (follow_page's
// caller holds it), and kept only if no invalidation collided; and without
// MIGRATE_PFN_WRITE they are mapped read-only, so a device write faults
// them again.
func (dm *hmmDmirror) finalizeAndMap(start, end, seq uint64) {
	mm := dm.notifier.MM()
	var pfns [dmirrorChunk]uint64
	var present [dmirrorChunk]bool
	for a := start; a < end; a += gfp.PageSize {
		i := (a - start) >> gfp.PageShift
		pfns[i], present[i] = mm.Lookup(a)
	}
	dm.mutex.Lock()
	defer dm.mutex.Unlock()
	if dm.notifier.ReadRetry(seq) {
		return
	}
	for a := start; a < end; a += gfp.PageSize {
		if i := (a - start) >> gfp.PageShift; present[i] {
			dm.xaStore(a>>gfp.PageShift, pfns[i]<<1, gfp.Atomic)
		}
	}
}

// dmirrorInterval is struct dmirror_interval, the snapshot's notifier.
type dmirrorInterval struct {
	dmirror *hmmDmirror
}

// Invalidate is dmirror_snapshot_invalidate: any invalidation of the
// interval spoils the whole snapshot, so the sequence is all it sets.
func (di *dmirrorInterval) Invalidate(sub *mmnotifier.IntervalNotifier, r *mmnotifier.Range, curSeq uint64) bool {
	if r.Blockable() {
		di.dmirror.mutex.Lock()
	} else if !di.dmirror.mutex.TryLock() {
		return false
	}
	sub.SetSeq(curSeq)
	di.dmirror.mutex.Unlock()
	return true
}

// mkentry is dmirror_mkentry for system memory.
func mkentry(entry uint64) byte {
	if entry&mmnotifier.HMMPFNError != 0 {
		return dmirrorProtError
	}
	if entry&mmnotifier.HMMPFNValid == 0 {
		return dmirrorProtNone
	}
	if entry&mmnotifier.HMMPFNWrite != 0 {
		return dmirrorProtNone | dmirrorProtWrite
	}
	return dmirrorProtNone | dmirrorProtRead
}

// rangeSnapshot is dmirror_range_snapshot.
func (dm *hmmDmirror) rangeSnapshot(r *mmnotifier.HMMRange, perm []byte) error {
	mm := dm.notifier.MM()
	timeout := time.Now().Add(hmmRangeTimeout)
	var err error
	r.Notifier, err = mmnotifier.InsertInterval(mm, r.Start, r.End-r.Start, &dmirrorInterval{dm})
	if err != nil {
		return err
	}
	defer r.Notifier.Remove()
	for {
		if time.Now().After(timeout) {
			return mmnotifier.ErrBusy
		}
		r.NotifierSeq = r.Notifier.ReadBegin()
		mm.MmapLock().RLock()
		err = mmnotifier.HMMRangeFault(r)
		mm.MmapLock().RUnlock()
		if err != nil {
			if errors.Is(err, mmnotifier.ErrBusy) {
				continue
			}
			return err
		}
		dm.mutex.Lock()
		if r.Notifier.ReadRetry(r.NotifierSeq) {
			dm.mutex.Unlock()
			continue
		}
		break
	}
	for i, e := range r.PFNs {
		perm[i] = mkentry(e)
	}
	dm.mutex.Unlock()
	return nil
}

// snapshot is dmirror_snapshot: the protection of every page of
// [addr, addr+len(perm)<<PAGE_SHIFT), without faulting anything in.
func (dm *hmmDmirror) snapshot(addr uint64, perm []byte) error {
	mm := dm.notifier.MM()
	end := addr + uint64(len(perm))*gfp.PageSize
	if !mm.GetNotZero() {
		return mmnotifier.ErrInvalid
	}
	defer mm.Put()
	var pfns [dmirrorChunk]uint64
	for a := addr; a < end; {
		next := min(a+dmirrorChunk*gfp.PageSize, end)
		r := mmnotifier.HMMRange{Start: a, End: next, PFNs: pfns[:(next-a)>>gfp.PageShift]}
		i := (a - addr) >> gfp.PageShift
		if err := dm.rangeSnapshot(&r, perm[i:]); err != nil {
			return err
		}
		a = next
	}
	return nil
}
