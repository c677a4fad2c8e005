package mmnotifier_test

// A port of Xen's grant device, gntdev (drivers/xen/gntdev.c, v6.12), to
// krules' public API: grant maps mapped into a process, each with an
// interval notifier whose invalidate (gntdev_invalidate) refuses every
// non-blockable range and otherwise unmaps the grants of the overlap
// asynchronously (unmap_grant_pages, gnttab_unmap_refs_async, which
// retries while another device still holds the pages). Beside it, the
// list notifier gntdev had before v5.5 (mn_invl_range_start under
// priv->lock, trylock and -EAGAIN when not blockable since v4.19), whose
// history holds the bug: taking priv->lock in every range.

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
)

// gntdevBugs selects the deliberate mistakes of a broken port.
type gntdevBugs struct {
	// lockNonblock is mn_invl_range_start before "mm, oom: distinguish
	// blockable mode for mmu notifiers" (v4.19): mutex_lock(&priv->lock)
	// and unmap whatever the range, in the list notifier.
	lockNonblock bool
}

// gntdevGrantMap is struct gntdev_grant_map.
type gntdevGrantMap struct {
	index, count uint64
	priv         *gntdevPriv

	pagesVMStart uint64 // map->pages_vm_start
	notifier     *mmnotifier.IntervalNotifier
	notifierInit bool
	mapped       bool // map->vma != NULL (the list notifier's in_range)

	users atomic.Int32 // map->users
	// handles[i] is unmap_ops[i].handle != INVALID_GRANT_HANDLE. The
	// kernel reads them unlocked; here an unmap claims a handle with a
	// compare-and-swap, so two overlapping invalidations unmap it once.
	handles    []atomic.Bool
	liveGrants atomic.Int64 // map->live_grants

	pages []*gfp.Page // the foreign frames (map->pages)
	// pinned counts references another device holds on the pages (a
	// page_count above 1): gnttab_unmap_refs_async waits them out.
	pinned atomic.Int32
}

// gntdevPriv is struct gntdev_priv, one open file.
type gntdevPriv struct {
	lock   lockclass.Mutex // priv->lock
	maps   []*gntdevGrantMap
	mm     *mmnotifier.MM
	zone   *gfp.Zone
	bugs   gntdevBugs
	legacy bool                     // the list notifier of v4.19-v5.4
	sub    *mmnotifier.Subscription // priv->mn (legacy)
	next   uint64                   // the next free index

	work      sync.WaitGroup // the grant table's unmap work items
	refused   atomic.Int64
	unmapped  atomic.Int64
	unmapWait atomic.Int64 // delayed retries of gnttab_unmap_refs_async
	freed     atomic.Int64
}

// gntdevOpen is gntdev_open; legacy registers the pre-v5.5 list notifier
// (mmu_notifier_register on the opening process).
func gntdevOpen(mm *mmnotifier.MM, zone *gfp.Zone, legacy bool, bugs gntdevBugs) (*gntdevPriv, error) {
	priv := &gntdevPriv{mm: mm, zone: zone, legacy: legacy, bugs: bugs}
	priv.lock.Init(lockclass.WithName("&priv->lock"))
	if legacy {
		var err error
		if priv.sub, err = mmnotifier.Register(mm, (*gntdevMN)(priv)); err != nil {
			return nil, err
		}
	}
	return priv, nil
}

// release is gntdev_release: drop every map, then (legacy) unregister.
func (priv *gntdevPriv) release() {
	priv.lock.Lock()
	maps := priv.maps
	priv.maps = nil
	priv.lock.Unlock()
	for _, m := range maps {
		m.put()
	}
	if priv.legacy {
		priv.sub.Unregister()
	}
	priv.work.Wait()
}

// ioctlMapGrantRef is gntdev_ioctl_map_grant_ref: gntdev_alloc_map
// (GFP_KERNEL, before priv->lock), then gntdev_add_map under it. It
// returns the map's index, the offset to mmap.
func (priv *gntdevPriv) ioctlMapGrantRef(count int) (uint64, error) {
	m := &gntdevGrantMap{count: uint64(count), priv: priv, handles: make([]atomic.Bool, count)}
	for range count {
		p, err := priv.zone.AllocPages(0, gfp.Kernel) // gnttab_alloc_pages
		if err != nil {
			m.freePages()
			return 0, err
		}
		m.pages = append(m.pages, p)
	}
	m.users.Store(1)
	priv.lock.Lock()
	m.index = priv.next
	priv.next += m.count
	priv.maps = append(priv.maps, m)
	priv.lock.Unlock()
	return m.index, nil
}

// findMapIndex is gntdev_find_map_index, under priv->lock.
func (priv *gntdevPriv) findMapIndex(index, count uint64) *gntdevGrantMap {
	for _, m := range priv.maps {
		if m.index == index && m.count == count {
			return m
		}
	}
	return nil
}

// ioctlUnmapGrantRef is gntdev_ioctl_unmap_grant_ref.
func (priv *gntdevPriv) ioctlUnmapGrantRef(index, count uint64) error {
	priv.lock.Lock()
	m := priv.findMapIndex(index, count)
	if m != nil {
		for i, x := range priv.maps {
			if x == m {
				priv.maps = append(priv.maps[:i], priv.maps[i+1:]...)
				break
			}
		}
	}
	priv.lock.Unlock()
	if m == nil {
		return mmnotifier.ErrInvalid // -ENOENT
	}
	m.put()
	return nil
}

// mmap is gntdev_mmap for the VMA MM.MmapDevice made at addr, which calls
// it with mmap_lock held for writing as mmap_region calls ->mmap: insert
// the interval notifier (mmu_interval_notifier_insert_locked) under
// priv->lock, then map the grants (map_grant_pages).
// It returns the map, which is both vma->vm_ops (gntdev_vmops) and
// vma->vm_private_data.
func (priv *gntdevPriv) mmap(addr, index, count uint64) (*gntdevGrantMap, error) {
	priv.lock.Lock()
	m := priv.findMapIndex(index, count)
	if m == nil || m.mapped {
		priv.lock.Unlock()
		return nil, mmnotifier.ErrInvalid
	}
	m.users.Add(1)
	m.mapped = true
	m.pagesVMStart = addr
	if !priv.legacy {
		n, err := mmnotifier.InsertIntervalLocked(priv.mm, addr, count*gfp.PageSize, m)
		if err != nil {
			priv.lock.Unlock()
			m.put()
			return nil, err
		}
		m.notifier, m.notifierInit = n, true
	}
	priv.lock.Unlock()
	// map_grant_pages: GNTTABOP_map_grant_ref fills the PTEs that
	// find_grant_ptes found, so the mapping is populated, which is what
	// makes mprotect invalidate it (change_pmd_range skips empty pmds).
	for i := range m.handles {
		if _, err := priv.mm.FaultLocked(addr+uint64(i)*gfp.PageSize, false); err != nil {
			return nil, err
		}
		m.handles[i].Store(true)
	}
	m.liveGrants.Add(int64(count))
	return m, nil
}

// Open is gntdev_vma_open: a split gives the new piece a reference.
func (m *gntdevGrantMap) Open(*mmnotifier.VMA) { m.users.Add(1) }

// Close is gntdev_vma_close, for each piece of the mapping as the process
// unmaps it or exits.
func (m *gntdevGrantMap) Close(*mmnotifier.VMA) {
	if m.priv.legacy {
		m.priv.lock.Lock()
		m.mapped = false
		m.priv.lock.Unlock()
	}
	m.put()
}

// put is gntdev_put_map: the last reference unmaps what is left, waits
// for the unmaps in flight to drop theirs, removes the notifier and frees.
func (m *gntdevGrantMap) put() {
	if m.users.Add(-1) != 0 {
		return
	}
	// Keeps the final unmap from re-entering the free path; it can drop
	// a reference only after taking one.
	m.users.Store(1)
	m.unmapGrantPages(0, m.count)
	if m.users.Add(-1) != 0 {
		return
	}
	if m.notifierInit {
		m.notifier.Remove()
	}
	m.freePages()
	m.priv.freed.Add(1)
}

func (m *gntdevGrantMap) freePages() {
	for _, p := range m.pages {
		m.priv.zone.FreePages(p, 0)
	}
}

// unmapGrantPages is unmap_grant_pages: unmap each run of live handles
// of [offset, offset+pages).
func (m *gntdevGrantMap) unmapGrantPages(offset, pages uint64) {
	var claimed []uint64
	for i := offset; i < offset+pages; i++ {
		if m.handles[i].CompareAndSwap(true, false) {
			claimed = append(claimed, i)
		}
	}
	if len(claimed) != 0 {
		m.unmapAsync(claimed)
	}
}

// unmapAsync is __unmap_grant_pages: a reference keeps the map alive until
// gnttab_unmap_refs_async has unmapped the grants, which it does from a
// work item once no other device holds the pages, retrying after a delay
// (__gnttab_unmap_refs_async); __unmap_grant_pages_done drops the live
// grants and the reference.
func (m *gntdevGrantMap) unmapAsync(idx []uint64) {
	m.users.Add(1)
	m.priv.work.Add(1)
	krules.Go("kworker/gnttab_unmap", func() {
		defer m.priv.work.Done()
		for m.pinned.Load() != 0 {
			m.priv.unmapWait.Add(1)
			time.Sleep(time.Millisecond) // schedule_delayed_work, GNTTAB_UNMAP_REFS_DELAY
		}
		m.priv.unmapped.Add(int64(len(idx)))
		if m.liveGrants.Add(-int64(len(idx))) < 0 {
			panic("WARN_ON(live_grants < 0)")
		}
		m.put()
	})
}

// Invalidate is gntdev_invalidate. The interval was the VMA's when it was
// inserted; the VMA may have been split since, so the grants are clipped
// to the map's own span.
func (m *gntdevGrantMap) Invalidate(_ *mmnotifier.IntervalNotifier, r *mmnotifier.Range, _ uint64) bool {
	if !r.Blockable() {
		m.priv.refused.Add(1)
		return false
	}
	mapStart := m.pagesVMStart
	mapEnd := mapStart + m.count*gfp.PageSize
	if mapStart >= r.End || mapEnd <= r.Start {
		return true
	}
	mstart, mend := max(r.Start, mapStart), min(r.End, mapEnd)
	m.unmapGrantPages((mstart-mapStart)>>gfp.PageShift, (mend-mstart)>>gfp.PageShift)
	return true
}

// gntdevMN is priv->mn, the list notifier of v4.19 to v5.4.
type gntdevMN gntdevPriv

// unmapIfInRange is v5.4's unmap_if_in_range, under priv->lock.
func (m *gntdevGrantMap) unmapIfInRange(start, end uint64, blockable bool) error {
	if !m.mapped {
		return nil
	}
	mapStart := m.pagesVMStart
	mapEnd := mapStart + m.count*gfp.PageSize
	if mapStart >= end || mapEnd <= start {
		return nil
	}
	if !blockable {
		return mmnotifier.ErrAgain
	}
	mstart, mend := max(start, mapStart), min(end, mapEnd)
	m.unmapGrantPages((mstart-mapStart)>>gfp.PageShift, (mend-mstart)>>gfp.PageShift)
	return nil
}

// InvalidateRangeStart is v5.4's mn_invl_range_start.
func (mn *gntdevMN) InvalidateRangeStart(r *mmnotifier.Range) error {
	priv := (*gntdevPriv)(mn)
	blockable := r.Blockable()
	switch {
	case blockable || priv.bugs.lockNonblock:
		priv.lock.Lock()
		blockable = true // v4.18 knew no other kind of range
	case !priv.lock.TryLock():
		priv.refused.Add(1)
		return mmnotifier.ErrAgain
	}
	defer priv.lock.Unlock()
	for _, m := range priv.maps {
		if err := m.unmapIfInRange(r.Start, r.End, blockable); err != nil {
			priv.refused.Add(1)
			return err
		}
	}
	return nil
}

// Release is mn_release: unmap every mapped grant.
func (mn *gntdevMN) Release(*mmnotifier.MM) {
	priv := (*gntdevPriv)(mn)
	priv.lock.Lock()
	for _, m := range priv.maps {
		if m.mapped {
			m.unmapGrantPages(0, m.count)
		}
	}
	priv.lock.Unlock()
}
