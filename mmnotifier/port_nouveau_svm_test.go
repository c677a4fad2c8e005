package mmnotifier_test

// A port of nouveau's SVM (drivers/gpu/drm/nouveau/nouveau_svm.c, v6.12)
// to krules' public API: the per-client list notifier that clears GPU PTEs,
// and the GPU fault handler that mirrors one page at a time through a
// transient interval notifier and hmm_range_fault.

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
)

const (
	faultAccessRead     = 0
	faultAccessWrite    = 1
	faultAccessAtomic   = 2
	faultAccessPrefetch = 3

	pfnmapV = 1 << 0 // NVIF_VMM_PFNMAP_V0_V
	pfnmapW = 1 << 1 // NVIF_VMM_PFNMAP_V0_W
	pfnmapA = 1 << 2 // NVIF_VMM_PFNMAP_V0_A
)

type nouveauBugs struct {
	invalidateNonblock bool // the list notifier sleeps in a non-blockable range
	removeUnderMutex   bool // mmu_interval_notifier_remove under svmm->mutex
	allocUnderMutex    bool // nouveau_pfns_map allocates under svmm->mutex
}

// nouveauDRM is struct nouveau_drm: its address is the device-private
// owner its migrations and exclusive accesses carry.
type nouveauDRM struct {
	bugs nouveauBugs
	svm  *nouveauSVM
}

// nouveauSVM is struct nouveau_svm: the channel instances of the SVM
// clients, under svm->mutex.
type nouveauSVM struct {
	drm   *nouveauDRM
	mutex lockclass.Mutex
	inst  map[uint64]*nouveauSVMM

	replayed atomic.Int64
	canceled atomic.Int64
	unknown  atomic.Int64 // faults of channels without SVM, cancelled
}

type svmFault struct {
	inst   uint64
	addr   uint64
	access int
}

// nvkmVMM is the GPU page table of the client, behind vmm->mutex.vmm.
type nvkmVMM struct {
	mutex lockclass.Mutex
	ptes  map[uint64]uint64
}

// pfnmap and pfnclr are the NVIF_VMM_V0_PFNMAP and _PFNCLR methods.
func (v *nvkmVMM) pfnmap(addr, phys uint64) {
	v.mutex.Lock()
	v.ptes[addr] = phys
	v.mutex.Unlock()
}

func (v *nvkmVMM) pfnclr(addr, size uint64) {
	v.mutex.Lock()
	for a := addr; a < addr+size; a += gfp.PageSize {
		delete(v.ptes, a)
	}
	v.mutex.Unlock()
}

// nouveauSVMM is struct nouveau_svmm.
type nouveauSVMM struct {
	drm       *nouveauDRM
	sub       *mmnotifier.Subscription
	mm        *mmnotifier.MM
	mutex     lockclass.Mutex
	vmm       *nvkmVMM
	unmanaged struct{ start, limit uint64 }

	mem           []byte // what kzalloc gave for the svmm itself
	invalidations atomic.Int64
	refused       atomic.Int64
	freed         atomic.Bool
}

func nouveauSVMInit(drm *nouveauDRM) *nouveauSVM {
	svm := &nouveauSVM{drm: drm, inst: map[uint64]*nouveauSVMM{}}
	svm.mutex.Init(lockclass.WithName("&svm->mutex"))
	drm.svm = svm
	return svm
}

// svmmInit is nouveau_svmm_init: __mmu_notifier_register under
// mmap_write_lock; the notifier owns the svmm from then on.
func svmmInit(drm *nouveauDRM, mm *mmnotifier.MM, unmanagedAddr, unmanagedSize uint64) (*nouveauSVMM, error) {
	mem, err := gfp.Alloc(512, gfp.Kernel|gfp.Zero) // kzalloc(sizeof(*svmm), GFP_KERNEL)
	if err != nil {
		return nil, err
	}
	svmm := &nouveauSVMM{drm: drm, mm: mm, mem: mem, vmm: &nvkmVMM{ptes: map[uint64]uint64{}}}
	svmm.unmanaged.start, svmm.unmanaged.limit = unmanagedAddr, unmanagedAddr+unmanagedSize
	svmm.mutex.Init(lockclass.WithName("&svmm->mutex"))
	svmm.vmm.mutex.Init(lockclass.WithName("&vmm->mutex.vmm"))
	mm.MmapLock().Lock()
	sub, err := mmnotifier.RegisterLocked(mm, svmm)
	mm.MmapLock().Unlock()
	if err != nil {
		return nil, err
	}
	svmm.sub = sub
	return svmm, nil
}

// InvalidateRangeStart is nouveau_svmm_invalidate_range_start.
func (svmm *nouveauSVMM) InvalidateRangeStart(r *mmnotifier.Range) error {
	if !r.Blockable() && !svmm.drm.bugs.invalidateNonblock {
		svmm.refused.Add(1)
		return mmnotifier.ErrAgain
	}
	start, limit := r.Start, r.End
	svmm.mutex.Lock()
	defer svmm.mutex.Unlock()
	if svmm.vmm == nil {
		return nil
	}
	// Device-private pages are invalidated by the migration itself.
	if r.Event == mmnotifier.EventMigrate && r.Owner == svmm.drm {
		return nil
	}
	svmm.invalidations.Add(1)
	if limit > svmm.unmanaged.start && start < svmm.unmanaged.limit {
		if start < svmm.unmanaged.start {
			svmm.vmm.pfnclr(start, svmm.unmanaged.limit-start)
		}
		start = svmm.unmanaged.limit
	}
	if limit > start {
		svmm.vmm.pfnclr(start, limit-start)
	}
	return nil
}

// FreeNotifier is nouveau_svmm_free_notifier: kfree.
func (svmm *nouveauSVMM) FreeNotifier() {
	gfp.Free(svmm.mem)
	svmm.freed.Store(true)
}

// fini is nouveau_svmm_fini.
func (svmm *nouveauSVMM) fini() {
	svmm.mutex.Lock()
	svmm.vmm = nil
	svmm.mutex.Unlock()
	svmm.sub.Put()
}

// join is nouveau_svmm_join: link a channel instance to the svmm.
func (svm *nouveauSVM) join(svmm *nouveauSVMM, inst uint64) error {
	b, err := gfp.Alloc(32, gfp.Kernel) // kmalloc(sizeof(*ivmm), GFP_KERNEL)
	if err != nil {
		return err
	}
	gfp.Free(b)
	svm.mutex.Lock()
	svm.inst[inst] = svmm
	svm.mutex.Unlock()
	return nil
}

// svmNotifier is struct svm_notifier, the fault handler's transient
// interval notifier.
type svmNotifier struct {
	notifier *mmnotifier.IntervalNotifier
	svmm     *nouveauSVMM
}

// Invalidate is nouveau_svm_range_invalidate.
func (sn *svmNotifier) Invalidate(sub *mmnotifier.IntervalNotifier, r *mmnotifier.Range, curSeq uint64) bool {
	if r.Event == mmnotifier.EventExclusive && r.Owner == sn.svmm.drm {
		return true
	}
	// Serialises the sequence update with the fault handler, which maps
	// the page under the same mutex.
	if r.Blockable() {
		sn.svmm.mutex.Lock()
	} else if !sn.svmm.mutex.TryLock() {
		return false
	}
	sub.SetSeq(curSeq)
	sn.svmm.mutex.Unlock()
	return true
}

// rangeFault is nouveau_range_fault.
func (svm *nouveauSVM) rangeFault(svmm *nouveauSVMM, addr uint64, hmmFlags uint64, sn *svmNotifier) (phys uint64, err error) {
	timeout := time.Now().Add(hmmRangeTimeout)
	pfns := make([]uint64, 1)
	r := mmnotifier.HMMRange{DefaultFlags: hmmFlags, PFNs: pfns}
	mm := svmm.mm
	sn.notifier, err = mmnotifier.InsertInterval(mm, addr, gfp.PageSize, sn)
	if err != nil {
		return 0, err
	}
	r.Notifier = sn.notifier
	r.Start, r.End = sn.notifier.Interval()
	r.End++
	locked := false
	defer func() {
		if locked { // the bug: remove waits for invalidations that take the mutex
			sn.notifier.Remove()
			svmm.mutex.Unlock()
			return
		}
		sn.notifier.Remove()
	}()
	for {
		if time.Now().After(timeout) {
			return 0, mmnotifier.ErrBusy
		}
		r.NotifierSeq = sn.notifier.ReadBegin()
		mm.MmapLock().RLock()
		err = mmnotifier.HMMRangeFault(&r)
		mm.MmapLock().RUnlock()
		if err != nil {
			if errors.Is(err, mmnotifier.ErrBusy) {
				continue
			}
			return 0, err
		}
		svmm.mutex.Lock()
		if sn.notifier.ReadRetry(r.NotifierSeq) {
			svmm.mutex.Unlock()
			continue
		}
		break
	}
	phys = svm.convertPFN(&r)
	svmm.vmm.pfnmap(addr, phys) // nvif_object_ioctl(PFNMAP)
	if svm.drm.bugs.removeUnderMutex {
		locked = true
		return phys, nil
	}
	svmm.mutex.Unlock()
	return phys, nil
}

// convertPFN is nouveau_hmm_convert_pfn.
func (svm *nouveauSVM) convertPFN(r *mmnotifier.HMMRange) uint64 {
	e := r.PFNs[0]
	if e&mmnotifier.HMMPFNValid == 0 {
		return 0
	}
	phys := (e&^mmnotifier.HMMPFNFlags)<<gfp.PageShift | pfnmapV
	if e&mmnotifier.HMMPFNWrite != 0 {
		phys |= pfnmapW
	}
	return phys
}

// atomicRangeFault is nouveau_atomic_range_fault: make the page exclusive
// to the device, then map it with atomic access.
func (svm *nouveauSVM) atomicRangeFault(svmm *nouveauSVMM, addr uint64, sn *svmNotifier) (uint64, error) {
	timeout := time.Now().Add(hmmRangeTimeout)
	mm := svmm.mm
	var err error
	sn.notifier, err = mmnotifier.InsertInterval(mm, addr, gfp.PageSize, sn)
	if err != nil {
		return 0, err
	}
	defer sn.notifier.Remove()
	for {
		if time.Now().After(timeout) {
			return 0, mmnotifier.ErrBusy
		}
		seq := sn.notifier.ReadBegin()
		mm.MmapLock().RLock()
		err := makeDeviceExclusive(sn.notifier, addr, svm.drm)
		mm.MmapLock().RUnlock()
		if err != nil {
			return 0, mmnotifier.ErrInvalid
		}
		svmm.mutex.Lock()
		if !sn.notifier.ReadRetry(seq) {
			break
		}
		svmm.mutex.Unlock()
	}
	phys := uint64(addr) | pfnmapV | pfnmapW | pfnmapA
	svmm.vmm.pfnmap(addr, phys)
	svmm.mutex.Unlock()
	return phys, nil
}

// makeDeviceExclusive stands for make_device_exclusive_range, which krules
// does not have: under the caller's mmap_lock, it faults the page in for
// writing (get_user_pages_remote) and invalidates it with
// MMU_NOTIFY_EXCLUSIVE and the device as owner. The exclusive PTE itself,
// and the invalidation a CPU access to it makes, are not modelled.
func makeDeviceExclusive(sub *mmnotifier.IntervalNotifier, addr uint64, owner any) error {
	mm := sub.MM()
	if _, err := mm.FaultLocked(addr, true); err != nil {
		return err
	}
	r := mmnotifier.NewRangeOwner(mm, mmnotifier.EventExclusive, addr, addr+gfp.PageSize, owner)
	mmnotifier.InvalidateRangeStart(&r)
	mmnotifier.InvalidateRangeEnd(&r)
	return nil
}

// fault is nouveau_svm_fault, the fault buffer's work item, for one batch.
func (svm *nouveauSVM) fault(batch []svmFault) {
	svm.mutex.Lock()
	svmms := make([]*nouveauSVMM, len(batch))
	for i, f := range batch {
		svmms[i] = svm.inst[f.inst]
	}
	svm.mutex.Unlock()
	for i, f := range batch {
		svmm := svmms[i]
		if svmm == nil {
			svm.unknown.Add(1)
			svm.canceled.Add(1)
			continue
		}
		var hmmFlags uint64
		atomicAccess := false
		switch f.access {
		case faultAccessRead:
			hmmFlags = mmnotifier.HMMPFNReqFault
		case faultAccessAtomic:
			atomicAccess = true
		case faultAccessPrefetch:
			hmmFlags = 0
		default:
			hmmFlags = mmnotifier.HMMPFNReqFault | mmnotifier.HMMPFNReqWrite
		}
		mm := svmm.mm
		if !mm.GetNotZero() {
			svm.canceled.Add(1)
			continue
		}
		sn := &svmNotifier{svmm: svmm}
		var err error
		if atomicAccess {
			_, err = svm.atomicRangeFault(svmm, f.addr, sn)
		} else {
			_, err = svm.rangeFault(svmm, f.addr, hmmFlags, sn)
		}
		mm.Put()
		if err != nil {
			svm.canceled.Add(1)
		} else {
			svm.replayed.Add(1)
		}
	}
}

// pfnsMap is nouveau_pfns_map, called by nouveau_dmem after migrating pages
// to VRAM: the args come from nouveau_pfns_alloc (GFP_KERNEL) beforehand.
func (svmm *nouveauSVMM) pfnsMap(addr uint64, npages int) error {
	var args []byte
	var err error
	if !svmm.drm.bugs.allocUnderMutex {
		if args, err = gfp.Alloc(16+8*npages, gfp.Kernel|gfp.Zero); err != nil {
			return err
		}
	}
	svmm.mutex.Lock()
	if svmm.drm.bugs.allocUnderMutex {
		if args, err = gfp.Alloc(16+8*npages, gfp.Kernel|gfp.Zero); err != nil {
			svmm.mutex.Unlock()
			return err
		}
	}
	for i := range npages {
		svmm.vmm.pfnmap(addr+uint64(i)*gfp.PageSize, pfnmapV)
	}
	svmm.mutex.Unlock()
	gfp.Free(args)
	return nil
}
