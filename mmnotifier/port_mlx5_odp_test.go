package mmnotifier_test

// A port of mlx5 on-demand paging (drivers/infiniband/hw/mlx5/odp.c and
// umr.c, drivers/infiniband/core/umem_odp.c, v6.12) to krules' public API.

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
	"github.com/krules/krules/nonblock"
)

const (
	odpReadAllowed  = 1 << 0 // ODP_READ_ALLOWED_BIT
	odpWriteAllowed = 1 << 1 // ODP_WRITE_ALLOWED_BIT

	xltZap    = 1 << 0 // MLX5_IB_UPD_XLT_ZAP
	xltAtomic = 1 << 1 // MLX5_IB_UPD_XLT_ATOMIC

	maxUMRWR          = 128                     // MAX_UMR_WR
	hmmRangeTimeout   = 1000 * time.Millisecond // HMM_RANGE_DEFAULT_TIMEOUT
	mlx5SpareUMRChunk = 0x10000                 // MLX5_SPARE_UMR_CHUNK
	umrBlockMask      = 8 - 1                   // MLX5_UMR_MTT_NUM_ENTRIES_ALIGNMENT - 1
)

// mlx5Bugs selects the deliberate mistakes of a broken port.
type mlx5Bugs struct {
	xltKernel       bool // pagefault_real_mr updates the XLT without MLX5_IB_UPD_XLT_ATOMIC
	readBeginLocked bool // mmu_interval_read_begin under umem_mutex
	ignoreBlockable bool // invalidate takes umem_mutex in a non-blockable range
}

// mlx5Dev is what one mlx5_ib_dev contributes: the UMR QP (umrc) and its
// completion queue, polled by a "softirq" goroutine.
type mlx5Dev struct {
	zone *gfp.Zone
	bugs mlx5Bugs

	umrcSem  nonblock.Semaphore // umrc->sem, MAX_UMR_WR
	umrcLock lockclass.Mutex    // umrc->lock
	sqLock   lockclass.SpinLock // qp->sq.lock

	emergencyMu   lockclass.Mutex // xlt_emergency_page_mutex
	emergencyPage []byte          // xlt_emergency_page
	emergencyPg   *gfp.Page

	cq   chan *umrContext // the UMR CQ: work requests the "HW" completes
	done chan struct{}

	mu        sync.Mutex // test bookkeeping only
	xltPosted int
	emergency int
}

// umrContext is struct mlx5r_umr_context.
type umrContext struct {
	done nonblock.Completion
	ok   bool
}

func newMlx5Dev(zone *gfp.Zone, bugs mlx5Bugs) *mlx5Dev {
	d := &mlx5Dev{zone: zone, bugs: bugs, cq: make(chan *umrContext, maxUMRWR), done: make(chan struct{})}
	d.umrcSem.Init(maxUMRWR) // sema_init(&dev->umrc.sem, MAX_UMR_WR)
	d.umrcLock.Init(lockclass.WithName("&umrc->lock"))
	d.sqLock.Init(lockclass.WithName("&qp->sq.lock"))
	d.emergencyMu.Init(lockclass.WithName("xlt_emergency_page_mutex"))
	page, err := zone.AllocPages(0, gfp.Kernel) // mlx5_ib_init: __get_free_page(GFP_KERNEL)
	if err != nil {
		panic(err)
	}
	d.emergencyPage, d.emergencyPg = page.Bytes(), page
	go d.pollCQ()
	return d
}

// pollCQ is the CQ's IB_POLL_SOFTIRQ handler: mlx5r_umr_done completes the
// waiter in softirq context.
func (d *mlx5Dev) pollCQ() {
	defer close(d.done)
	for ctx := range d.cq {
		nonblock.StartAtomic()
		ctx.ok = true
		ctx.done.Complete()
		nonblock.EndAtomic()
	}
}

func (d *mlx5Dev) close() {
	close(d.cq)
	<-d.done
	d.zone.FreePages(d.emergencyPg, 0) // mlx5_ib_cleanup: free_page(xlt_emergency_page)
}

// allocXLT is mlx5r_umr_alloc_xlt: as large a buffer as can be had without
// trying hard, then one page, then the emergency page under its mutex.
// "MLX5_IB_UPD_XLT_ATOMIC doesn't signal an atomic context just that the
// allocation can't trigger any kind of reclaim", hence the might_sleep.
func (d *mlx5Dev) allocXLT(nents int, flags gfp.Flags) (xlt []byte, page *gfp.Page, order int) {
	nonblock.MightSleep()
	flags |= gfp.Zero | gfp.NoRetry
	size := nents * 8
	if size > mlx5SpareUMRChunk {
		size = mlx5SpareUMRChunk
	}
	order = 0
	for gfp.PageSize<<order < size {
		order++
	}
	if p, err := d.zone.AllocPages(order, flags|gfp.NoWarn); err == nil {
		return p.Bytes(), p, order
	}
	if p, err := d.zone.AllocPages(0, flags); err == nil {
		return p.Bytes(), p, 0
	}
	d.emergencyMu.Lock()
	clear(d.emergencyPage)
	d.mu.Lock()
	d.emergency++
	d.mu.Unlock()
	return d.emergencyPage, nil, 0
}

// freeXLT is mlx5r_umr_free_xlt.
func (d *mlx5Dev) freeXLT(page *gfp.Page, order int) {
	if page == nil {
		d.emergencyMu.Unlock()
		return
	}
	d.zone.FreePages(page, order)
}

// postSendWait is mlx5r_umr_post_send_wait: take a send slot, post the
// work request under umrc->lock and the SQ spin lock, ring the doorbell,
// sleep until the CQ handler completes it.
func (d *mlx5Dev) postSendWait() error {
	var ctx umrContext
	d.umrcSem.Down()
	defer d.umrcSem.Up()
	d.umrcLock.Lock()
	d.sqLock.Lock()
	d.cq <- &ctx // mlx5r_ring_db: never blocks, the semaphore bounds the WRs
	d.sqLock.Unlock()
	d.umrcLock.Unlock()
	ctx.done.Wait()
	if !ctx.ok {
		return errors.New("reg umr failed")
	}
	return nil
}

// updateXLT is mlx5r_umr_update_xlt: build the translation entries of
// [idx, idx+npages) of mr in an XLT buffer and post them with UMR.
func (d *mlx5Dev) updateXLT(mr *mlx5MR, idx, npages int, flags int) error {
	gfpFlags := gfp.Kernel
	if flags&xltAtomic != 0 {
		gfpFlags = gfp.Atomic
	}
	xlt, page, order := d.allocXLT(npages, gfpFlags)
	defer d.freeXLT(page, order)
	for i := 0; i < npages && (i+1)*8 <= len(xlt); i++ {
		if flags&xltZap == 0 {
			xlt[i*8] = byte(mr.odp.dmaList[idx+i]) // populate_mtt
		}
	}
	d.mu.Lock()
	d.xltPosted++
	d.mu.Unlock()
	return d.postSendWait()
}

// mlx5MR is the part of struct mlx5_ib_mr that ODP touches.
type mlx5MR struct {
	dev *mlx5Dev
	odp *umemODP
}

// umemODP is struct ib_umem_odp.
type umemODP struct {
	mm        *mmnotifier.MM
	start     uint64
	end       uint64
	notifier  *mmnotifier.IntervalNotifier
	umemMutex lockclass.Mutex // umem_odp->umem_mutex
	pfnList   []uint64
	dmaList   []uint64
	npages    int
	private   *mlx5MR
	writable  bool

	invalidations int          // under umemMutex
	blocked       atomic.Int64 // non-blockable invalidations refused
}

// odpGet is ib_umem_odp_get + ib_init_umem_odp: the page lists with
// kvcalloc(GFP_KERNEL), then mmu_interval_notifier_insert.
func odpGet(mm *mmnotifier.MM, dev *mlx5Dev, addr, size uint64) (*mlx5MR, error) {
	odp := &umemODP{mm: mm, start: addr &^ (gfp.PageSize - 1), writable: true}
	odp.end = (addr + size + gfp.PageSize - 1) &^ (gfp.PageSize - 1)
	odp.umemMutex.Init(lockclass.WithName("&umem_odp->umem_mutex"))
	n := int((odp.end - odp.start) / gfp.PageSize)
	pfns, err := dev.zone.Kvmalloc(n*8, gfp.Kernel|gfp.Zero)
	if err != nil {
		return nil, err
	}
	dmas, err := dev.zone.Kvmalloc(n*8, gfp.Kernel|gfp.Zero)
	if err != nil {
		dev.zone.Kvfree(pfns)
		return nil, err
	}
	dev.zone.Kvfree(pfns) // the Go slices below stand for them
	dev.zone.Kvfree(dmas)
	odp.pfnList = make([]uint64, n)
	odp.dmaList = make([]uint64, n)
	mr := &mlx5MR{dev: dev, odp: odp}
	odp.private = mr
	odp.notifier, err = mmnotifier.InsertInterval(mm, odp.start, odp.end-odp.start, mr)
	if err != nil {
		return nil, err
	}
	return mr, nil
}

// release is ib_umem_odp_release.
func (mr *mlx5MR) release() {
	odp := mr.odp
	odp.umemMutex.Lock()
	odp.unmapDMAPages(odp.start, odp.end)
	odp.umemMutex.Unlock()
	odp.notifier.Remove()
}

// Invalidate is mlx5_ib_invalidate_range.
func (mr *mlx5MR) Invalidate(sub *mmnotifier.IntervalNotifier, r *mmnotifier.Range, curSeq uint64) bool {
	odp := mr.odp
	if !r.Blockable() && !mr.dev.bugs.ignoreBlockable {
		odp.blocked.Add(1)
		return false
	}
	odp.umemMutex.Lock()
	defer odp.umemMutex.Unlock()
	sub.SetSeq(curSeq)
	odp.invalidations++
	if odp.npages == 0 {
		return true
	}
	start, end := max(odp.start, r.Start), min(odp.end, r.End)
	if start >= end {
		return true
	}
	// Iteration one: zap the HW's MTTs, in blocks.
	var idx, blkStart int
	inBlock := false
	for addr := start; addr < end; addr += gfp.PageSize {
		idx = int((addr - odp.start) / gfp.PageSize)
		if odp.dmaList[idx]&(odpReadAllowed|odpWriteAllowed) != 0 {
			if !inBlock {
				blkStart, inBlock = idx, true
			}
		} else if inBlock && idx&umrBlockMask == 0 {
			mr.dev.updateXLT(mr, blkStart, idx-blkStart, xltZap|xltAtomic) //nolint:errcheck // as the driver
			inBlock = false
		}
	}
	if inBlock {
		mr.dev.updateXLT(mr, blkStart, idx-blkStart+1, xltZap|xltAtomic) //nolint:errcheck // as the driver
	}
	odp.unmapDMAPages(start, end)
	return true
}

// unmapDMAPages is ib_umem_odp_unmap_dma_pages.
func (odp *umemODP) unmapDMAPages(virt, bound uint64) {
	lockclass.AssertHeld(&odp.umemMutex)
	for addr := max(virt, odp.start); addr < min(bound, odp.end); addr += gfp.PageSize {
		idx := (addr - odp.start) / gfp.PageSize
		if odp.dmaList[idx] != 0 {
			odp.dmaList[idx] = 0
			odp.npages--
		}
	}
}

// mapDMAAndLock is ib_umem_odp_map_dma_and_lock: fault the range in with
// hmm_range_fault under the interval notifier's sequence, then take
// umem_mutex, check for a collision, map the pages; on success umem_mutex
// stays held for the caller.
func (odp *umemODP) mapDMAAndLock(userVirt, bcnt uint64, accessMask uint64, fault bool) (int, error) {
	if userVirt < odp.start || userVirt+bcnt > odp.end {
		return 0, mmnotifier.ErrFault
	}
	if !odp.mm.GetNotZero() {
		return 0, mmnotifier.ErrInvalid
	}
	defer odp.mm.Put()
	r := mmnotifier.HMMRange{Notifier: odp.notifier}
	r.Start = userVirt &^ (gfp.PageSize - 1)
	r.End = (userVirt + bcnt + gfp.PageSize - 1) &^ (gfp.PageSize - 1)
	pfnStart := int((r.Start - odp.start) / gfp.PageSize)
	n := int((r.End - r.Start) / gfp.PageSize)
	if fault {
		r.DefaultFlags = mmnotifier.HMMPFNReqFault
		if accessMask&odpWriteAllowed != 0 {
			r.DefaultFlags |= mmnotifier.HMMPFNReqWrite
		}
	}
	r.PFNs = odp.pfnList[pfnStart : pfnStart+n]
	timeout := time.Now().Add(hmmRangeTimeout)
	for {
		if odp.private.dev.bugs.readBeginLocked {
			odp.umemMutex.Lock()
			r.NotifierSeq = odp.notifier.ReadBegin()
			odp.umemMutex.Unlock()
		} else {
			r.NotifierSeq = odp.notifier.ReadBegin()
		}
		odp.mm.MmapLock().RLock()
		err := mmnotifier.HMMRangeFault(&r)
		odp.mm.MmapLock().RUnlock()
		if err != nil {
			if errors.Is(err, mmnotifier.ErrBusy) && time.Now().Before(timeout) {
				continue
			}
			return 0, err
		}
		odp.umemMutex.Lock()
		if odp.notifier.ReadRetry(r.NotifierSeq) {
			odp.umemMutex.Unlock()
			continue
		}
		break
	}
	for i := range n {
		e := r.PFNs[i]
		access := accessMask
		if !fault {
			if e&mmnotifier.HMMPFNValid == 0 {
				continue
			}
			access = odpReadAllowed
			if e&mmnotifier.HMMPFNWrite != 0 {
				access |= odpWriteAllowed
			}
		}
		dma := &odp.dmaList[pfnStart+i] // ib_umem_odp_map_dma_single_page
		if *dma != 0 {
			*dma = *dma&^3 | access
			continue
		}
		*dma = (e&^mmnotifier.HMMPFNFlags)<<2 | access
		odp.npages++
	}
	return n, nil
}

// pagefaultRealMR is pagefault_real_mr.
func (mr *mlx5MR) pagefaultRealMR(userVA, bcnt uint64, fault bool) (int, error) {
	odp := mr.odp
	access := uint64(odpReadAllowed)
	if odp.writable {
		access |= odpWriteAllowed
	}
	np, err := odp.mapDMAAndLock(userVA, bcnt, access, fault)
	if err != nil {
		return 0, err
	}
	xlt := xltAtomic
	if mr.dev.bugs.xltKernel {
		xlt = 0
	}
	startIdx := int((userVA - odp.start) / gfp.PageSize)
	err = mr.dev.updateXLT(mr, startIdx, np, xlt)
	odp.umemMutex.Unlock()
	return np, err
}
