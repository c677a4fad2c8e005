package dmafence_test

// A port of TTM's eviction under a ww ticket (drivers/gpu/drm/ttm/ttm_bo.c's
// ttm_bo_alloc_resource and ttm_bo_evict_alloc, ttm_bo_util.c's
// ttm_lru_walk_for_evict, v6.13) to krules' public API: a BO that needs
// VRAM evicts others from the LRU, first trylocking only, then, when the
// validating BO's reservation is held with a ticket, taking one busy BO's
// reservation with that ticket per walk (a ticketlock), which may wait, or
// make the ticket back off: -EDEADLK, which TTM turns into -ENOSPC for the
// caller to leave its ww transaction. An evicted BO's fences are waited for
// before its VRAM is taken.

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/lockclass"
)

var errNoSpace = errors.New("ENOSPC")

// ttmDevice is struct ttm_device with one VRAM manager of slots BOs.
type ttmDevice struct {
	lruLock lockclass.SpinLock // bdev->lru_lock
	slots   int
	lru     []*ttmBO // the VRAM manager's LRU, least recently used first

	// beforeTicketlock, if set, is told before each ticketlock: a test's
	// hook.
	beforeTicketlock func()

	evictions, ticketlocks atomic.Int64
}

// ttmBO is struct ttm_buffer_object: its GEM object and where it lives.
type ttmBO struct {
	gem    *gemObject
	inVRAM bool // guarded by the reservation and lru_lock
}

func newTTMDevice(slots int) *ttmDevice {
	bdev := &ttmDevice{slots: slots}
	bdev.lruLock.Init(lockclass.WithName("&bdev->lru_lock"))
	return bdev
}

// ttmOperationCtx is struct ttm_operation_ctx.
type ttmOperationCtx struct {
	kctx          context.Context // interruptible
	noWaitGPU     bool
	resv          *dmafence.Resv // with allowResEvict: held by the caller, may be evicted
	allowResEvict bool
}

// validate is ttm_bo_validate into VRAM: the caller holds bo's reservation,
// with ticket if it has one. TTM reads that ticket off the reservation
// (dma_resv_locking_ctx); the port is handed it, and checks it is the one.
func (bdev *ttmDevice) validate(bo *ttmBO, ctx *ttmOperationCtx, ticket *lockclass.WWAcquireCtx) error {
	bo.gem.resv.AssertHeld()
	if !bo.gem.resv.HeldBy(ticket) {
		panic("ttm: validating with a ticket the BO is not reserved with")
	}
	bdev.lruLock.Lock()
	if bo.inVRAM { // ttm_bo_move_to_lru_tail
		bdev.remove(bo)
		bdev.lru = append(bdev.lru, bo)
		bdev.lruLock.Unlock()
		return nil
	}
	bdev.lruLock.Unlock()
	for !bdev.resourceAlloc(bo) {
		if err := bdev.evictAlloc(bo, ctx, ticket); err != nil {
			return err
		}
	}
	return nil
}

// resourceAlloc is ttm_resource_alloc: a free VRAM slot, or false
// (-ENOSPC).
func (bdev *ttmDevice) resourceAlloc(bo *ttmBO) bool {
	bdev.lruLock.Lock()
	defer bdev.lruLock.Unlock()
	if len(bdev.lru) >= bdev.slots {
		return false
	}
	bo.inVRAM = true
	bdev.lru = append(bdev.lru, bo)
	return true
}

// remove takes bo off the LRU; the caller holds lru_lock.
func (bdev *ttmDevice) remove(bo *ttmBO) {
	for i, b := range bdev.lru {
		if b == bo {
			bdev.lru = append(bdev.lru[:i:i], bdev.lru[i+1:]...)
			return
		}
	}
}

// evictAlloc is ttm_bo_evict_alloc: a trylock-only walk; then, with a
// ticket, ticketlocking walks while they make progress.
func (bdev *ttmDevice) evictAlloc(evictor *ttmBO, ctx *ttmOperationCtx, ticket *lockclass.WWAcquireCtx) error {
	progress, err := bdev.walk(evictor, ctx, nil)
	if err == nil && progress == 0 && ticket != nil {
		for {
			var evicted int
			if evicted, err = bdev.walk(evictor, ctx, ticket); err != nil || evicted == 0 {
				break
			}
			progress += evicted
			if bdev.hasRoom() {
				break
			}
		}
	}
	switch {
	case err != nil:
		return err
	case progress == 0:
		return errNoSpace // -EBUSY from the walk: no placement here
	}
	return nil
}

func (bdev *ttmDevice) hasRoom() bool {
	bdev.lruLock.Lock()
	defer bdev.lruLock.Unlock()
	return len(bdev.lru) < bdev.slots
}

// walk is ttm_lru_walk_for_evict with target 1 and ttm_bo_evict_cb:
// each BO on the LRU trylocked (or the caller's own, with allow_res_evict),
// else, with a ticket, locked with it, once a walk; evicted if it is not
// the evictor. It returns the number evicted.
func (bdev *ttmDevice) walk(evictor *ttmBO, ctx *ttmOperationCtx, ticket *lockclass.WWAcquireCtx) (int, error) {
	bdev.lruLock.Lock()
	lru := append([]*ttmBO(nil), bdev.lru...) // the restartable cursor
	bdev.lruLock.Unlock()
	for _, bo := range lru {
		if bo == evictor {
			continue
		}
		locked, needsUnlock := false, false
		switch {
		case bo.gem.resv.TryLock():
			locked, needsUnlock = true, true
		case bo.gem.resv == ctx.resv && ctx.allowResEvict:
			bo.gem.resv.AssertHeld()
			locked = true
		case ticket == nil || ctx.noWaitGPU:
			continue
		}
		var err error
		if !locked { // ttm_lru_walk_ticketlock
			bdev.ticketlocks.Add(1)
			if bdev.beforeTicketlock != nil {
				bdev.beforeTicketlock()
			}
			if ctx.kctx != nil {
				err = bo.gem.resv.LockKillable(ctx.kctx, ticket)
			} else {
				err = bo.gem.resv.Lock(ticket)
			}
			switch {
			case err == nil:
				needsUnlock = true
				ticket = nil // one ticketlock a walk
			case errors.Is(err, lockclass.ErrDeadlock):
				return 0, errNoSpace // the caller must leave its ww transaction
			case errors.Is(err, lockclass.ErrAlready):
				continue // one of the caller's own
			default:
				return 0, err
			}
		}
		evicted, err := bdev.evict(bo, ctx)
		if needsUnlock {
			bo.gem.resv.Unlock()
		}
		if err != nil {
			return 0, err
		}
		if evicted {
			return 1, nil
		}
	}
	return 0, nil
}

// evict is ttm_bo_evict for a BO still in VRAM: its fences waited for
// (ttm_bo_wait_ctx), then its slot freed (moved to system memory). It
// reports whether it evicted bo.
func (bdev *ttmDevice) evict(bo *ttmBO, ctx *ttmOperationCtx) (bool, error) {
	bo.gem.resv.AssertHeld()
	if !bo.inVRAM { // moved meanwhile: skipped
		return false, nil
	}
	switch {
	case ctx.noWaitGPU:
		if !bo.gem.resv.TestSignaled(dmafence.UsageBookkeep) {
			return false, nil // -EBUSY: skipped
		}
	case ctx.kctx != nil:
		if err := bo.gem.resv.Wait(ctx.kctx, dmafence.UsageBookkeep); err != nil {
			return false, err
		}
	default:
		bo.gem.resv.WaitTimeout(dmafence.UsageBookkeep, dmafence.Forever)
	}
	bdev.lruLock.Lock()
	bdev.remove(bo)
	bo.inVRAM = false
	bdev.lruLock.Unlock()
	bdev.evictions.Add(1)
	return true, nil
}
