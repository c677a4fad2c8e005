package mmnotifier

import (
	"github.com/krules/krules/lockclass"
)

// HMM (mm/hmm.c): a device driver reads the CPU page table of a range to
// mirror it, under the protection of an interval notifier's sequence.

// Flags of HMMRange.PFNs entries (enum hmm_pfn_flags). The same bits ask
// for a fault on input (DefaultFlags) and describe the page on output.
const (
	// HMMPFNValid is HMM_PFN_VALID on output: the entry holds a frame
	// number. As HMMPFNReqFault on input it asks for the page to be faulted
	// in if it is not present.
	HMMPFNValid uint64 = 1 << 63
	// HMMPFNWrite is HMM_PFN_WRITE on output: the page is writable. As
	// HMMPFNReqWrite on input it asks for a write fault.
	HMMPFNWrite uint64 = 1 << 62
	// HMMPFNError is HMM_PFN_ERROR: the address cannot be accessed.
	HMMPFNError uint64 = 1 << 61

	// HMMPFNReqFault is HMM_PFN_REQ_FAULT.
	HMMPFNReqFault = HMMPFNValid
	// HMMPFNReqWrite is HMM_PFN_REQ_WRITE.
	HMMPFNReqWrite = HMMPFNWrite

	// HMMPFNFlags masks the flag bits off an entry, leaving the frame
	// number.
	HMMPFNFlags = HMMPFNValid | HMMPFNWrite | HMMPFNError
)

// HMMRange is struct hmm_range: what HMMRangeFault should read. It has no
// dev_private_owner (nouveau and xe set it to their device): an address
// space here has no device-private pages, so every entry is system memory.
// Nor has it pfn_flags_mask: input entries are not read, as with a mask of
// 0, so DefaultFlags is the request for every page. Every entry maps a
// single page (hmm_pfn_to_map_order is always 0).
type HMMRange struct {
	// Notifier and NotifierSeq are the interval notifier covering the
	// range and the sequence its ReadBegin returned.
	Notifier    *IntervalNotifier
	NotifierSeq uint64
	// Start and End delimit the range, page aligned; End is exclusive.
	Start, End uint64
	// PFNs receives one entry per page: frame number and HMMPFN* flags.
	PFNs []uint64
	// DefaultFlags applies to every page: HMMPFNReqFault to fault missing
	// pages in, HMMPFNReqWrite to fault them in writable.
	DefaultFlags uint64
}

// HMMRangeFault fills r.PFNs with the pages mapped in [r.Start, r.End),
// faulting them in as r.DefaultFlags asks: hmm_range_fault. The caller
// holds the address space's mmap_lock for reading. If an invalidation of
// the notifier's interval starts meanwhile (CheckRetry), it returns ErrBusy
// and the caller starts over from ReadBegin. An address with no mapping, or
// in a mapping that cannot be read (PROT_NONE), gets HMMPFNError, or fails
// the walk with ErrFault if a fault was asked for; a write fault asked for
// in a mapping without PROT_WRITE fails with ErrPerm, and a fault that
// fails (a page that cannot be allocated, an address space the OOM reaper
// has reaped) with ErrFault, as hmm_vma_fault's -EFAULT. A page that is not
// present gets an entry of 0 unless a fault was asked for; a write request
// means something only with ReqFault, as in the kernel.
//
// Success proves nothing by itself: the driver must still take its lock and
// check ReadRetry before it uses the entries. On the MM of a Process it
// walks and faults the real memory (see Process).
func HMMRangeFault(r *HMMRange) error {
	mm := r.Notifier.mm
	lockclass.AssertHeld(&mm.mmapLock)
	if mm.proc != nil {
		return mm.proc.rangeFault(r)
	}
	n := int((r.End - r.Start) / PageSize)
	if r.Start%PageSize != 0 || r.End%PageSize != 0 || r.End <= r.Start || len(r.PFNs) < n {
		return ErrInvalid
	}
	for i := range n {
		if r.Notifier.CheckRetry(r.NotifierSeq) {
			return ErrBusy
		}
		addr := r.Start + uint64(i)*PageSize
		e, err := mm.hmmEntry(addr, r.DefaultFlags)
		if err != nil {
			r.PFNs[i] = HMMPFNError
			return err
		}
		r.PFNs[i] = e
	}
	return nil
}

// hmmEntry reads (and faults, if asked) the entry of addr.
func (mm *MM) hmmEntry(addr, req uint64) (uint64, error) {
	fault := req&HMMPFNReqFault != 0
	v := mm.vmaAt(addr)
	// No VMA (hmm_vma_walk_hole without walk->vma), or one that cannot be
	// read (hmm_vma_walk_test): an error entry, or -EFAULT when a fault
	// was asked for.
	if v == nil || v.prot&ProtRead == 0 {
		if fault {
			return 0, ErrFault
		}
		return HMMPFNError, nil
	}
	// hmm_pte_need_fault: without REQ_FAULT nothing is asked, REQ_WRITE
	// included.
	write := fault && req&HMMPFNReqWrite != 0
	mm.ptl.Lock()
	e := mm.pt.get(addr)
	mm.ptl.Unlock()
	if e.page != nil && (!write || e.flags&pteWP == 0 && v.prot&ProtWrite != 0) {
		return entryOf(v, e), nil
	}
	if !fault {
		return 0, nil
	}
	if write && v.prot&ProtWrite == 0 { // hmm_vma_fault
		return 0, ErrPerm
	}
	if _, err := mm.faultLocked(addr, write); err != nil {
		// hmm_vma_fault: any VM_FAULT_ERROR of handle_mm_fault, a page
		// that cannot be allocated (VM_FAULT_OOM) included, is -EFAULT.
		return 0, ErrFault
	}
	mm.ptl.Lock()
	e = mm.pt.get(addr)
	mm.ptl.Unlock()
	if e.page == nil { // reclaimed again already; the caller will retry
		return 0, ErrBusy
	}
	return entryOf(v, e), nil
}

func entryOf(v *VMA, e pte) uint64 {
	out := e.page.PFN() | HMMPFNValid
	if v.prot&ProtWrite != 0 && e.flags&pteWP == 0 {
		out |= HMMPFNWrite
	}
	return out
}
