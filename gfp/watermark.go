package gfp

import (
	"fmt"
	"math/bits"
)

// Watermarks are a zone's thresholds, in pages (the kernel's
// _watermark[]). An allocation that would take the free pages to or below
// the watermark its flags select fails that attempt; kswapd is woken below
// Low and reclaims up to High.
type Watermarks struct {
	Min, Low, High, Promo int64
}

const (
	wmarkMin = iota
	wmarkLow
	wmarkHigh
	wmarkPromo
)

// allocFlags are the allocator's internal ALLOC_* flags (mm/internal.h),
// with the kernel's values.
type allocFlags uint32

const (
	allocWmarkMin    allocFlags = 0
	allocWmarkLow    allocFlags = 1
	allocWmarkHigh   allocFlags = 2
	allocWmarkMask   allocFlags = 3
	allocNoWatermark allocFlags = 0x04
	allocOOM         allocFlags = 0x08
	allocNonBlock    allocFlags = 0x10
	allocMinReserve  allocFlags = 0x20 // == __GFP_HIGH
	allocCPUSet      allocFlags = 0x40
	allocHighAtomic  allocFlags = 0x200
	allocKswapd      allocFlags = 0x800 // == __GFP_KSWAPD_RECLAIM
	allocReserves               = allocNonBlock | allocMinReserve | allocHighAtomic | allocOOM
)

// The kernel copies these two bits straight across; so do we.
var _ = [1]struct{}{}[Flags(allocMinReserve)^High]
var _ = [1]struct{}{}[Flags(allocKswapd)^KswapdReclaim]

// defaultMinFreeKbytes is calculate_min_free_kbytes for a zone of the given
// size: sqrt(16·KiB), clamped to [128 KiB, 256 MiB].
func defaultMinFreeKbytes(pages int64) int64 {
	kb := pages * (PageSize / 1024)
	v := isqrt(kb * 16)
	return min(max(v, 128), 262144)
}

func isqrt(n int64) int64 {
	if n <= 0 {
		return 0
	}
	x := int64(1) << ((bits.Len64(uint64(n)) + 1) / 2)
	for {
		y := (x + n/x) / 2
		if y >= x {
			return x
		}
		x = y
	}
}

// setupWatermarks is __setup_per_zone_wmarks for the zone's single node:
// min is min_free_kbytes in pages; each further watermark adds
// max(min/4, managed·scale/10000).
func (z *Zone) setupWatermarks() {
	z.wmarkMu.Lock()
	defer z.wmarkMu.Unlock()
	managed := int64(len(z.pages))
	kb := z.minFreeKbytes
	if kb == 0 {
		kb = defaultMinFreeKbytes(managed)
	}
	minPages := kb / (PageSize / 1024)
	delta := max(minPages/4, managed*z.scaleFactor/10000)
	z.wmark[wmarkMin].Store(minPages)
	z.wmark[wmarkLow].Store(minPages + delta)
	z.wmark[wmarkHigh].Store(minPages + 2*delta)
	z.wmark[wmarkPromo].Store(minPages + 3*delta)
}

// Watermarks returns the zone's current watermarks.
func (z *Zone) Watermarks() Watermarks {
	return Watermarks{
		Min:   z.wmark[wmarkMin].Load(),
		Low:   z.wmark[wmarkLow].Load(),
		High:  z.wmark[wmarkHigh].Load(),
		Promo: z.wmark[wmarkPromo].Load(),
	}
}

// SetMinFreeKbytes sets min_free_kbytes (0 restores the default) and
// recomputes the watermarks, like writing /proc/sys/vm/min_free_kbytes.
func (z *Zone) SetMinFreeKbytes(kb int64) error {
	if kb < 0 {
		return fmt.Errorf("gfp: min_free_kbytes %d", kb)
	}
	z.wmarkMu.Lock()
	z.minFreeKbytes = kb
	z.wmarkMu.Unlock()
	z.setupWatermarks()
	return nil
}

// SetWatermarkScaleFactor sets watermark_scale_factor (1..3000) and
// recomputes the watermarks, like /proc/sys/vm/watermark_scale_factor.
func (z *Zone) SetWatermarkScaleFactor(f int64) error {
	if f < 1 || f > 3000 {
		return fmt.Errorf("gfp: watermark_scale_factor %d out of 1..3000", f)
	}
	z.wmarkMu.Lock()
	z.scaleFactor = f
	z.wmarkMu.Unlock()
	z.setupWatermarks()
	return nil
}

// threshold returns the number of free pages that must remain above the
// watermark af selects once the reserve discounts of af are applied
// (__zone_watermark_ok's min).
func (z *Zone) threshold(af allocFlags) int64 {
	m := z.wmark[af&allocWmarkMask].Load()
	if af&allocReserves != 0 {
		if af&allocMinReserve != 0 {
			m -= m / 2
			if af&allocNonBlock != 0 {
				m -= m / 4
			}
		}
		if af&allocOOM != 0 {
			m -= m / 2
		}
	}
	return m
}

// watermarkOK is __zone_watermark_ok: would free pages (after taking the
// request) stay above the threshold, and is there a block big enough? It
// returns the pages of headroom (0 when it fails).
func (z *Zone) watermarkOK(order int, af allocFlags, free int64) int64 {
	free -= 1<<order - 1
	m := z.threshold(af)
	if free <= m {
		return 0
	}
	if order > 0 {
		found := false
		for o := order; o <= MaxOrder; o++ {
			if z.nrBlocks[o].Load() > 0 {
				found = true
				break
			}
		}
		if !found {
			return 0
		}
	}
	return free - m + (1<<order - 1)
}

// pfmemallocFlags is __gfp_pfmemalloc_flags: the reserve access the flags
// and the goroutine's PF_MEMALLOC scope grant. Goroutines have no interrupt
// context and no OOM victims, so steps 3 and 5 never apply.
func pfmemallocFlags(gfp Flags, pf TaskFlags) allocFlags {
	switch {
	case gfp&NoMemalloc != 0:
		return 0
	case gfp&Memalloc != 0:
		return allocNoWatermark
	case pf&PFMemalloc != 0:
		return allocNoWatermark
	}
	return 0
}

// gfpToAllocFlags is the slow path's gfp_to_alloc_flags: the min watermark,
// HIGH and KSWAPD copied across, and for callers that cannot block the
// non-block discount (unless NoMemalloc).
func gfpToAllocFlags(gfp Flags, order int) allocFlags {
	af := allocWmarkMin | allocCPUSet
	af |= allocFlags(gfp & (High | KswapdReclaim))
	if gfp&DirectReclaim == 0 {
		if gfp&NoMemalloc == 0 {
			af |= allocNonBlock
			if order > 0 {
				af |= allocHighAtomic
			}
		}
		if af&allocMinReserve != 0 {
			af &^= allocCPUSet
		}
	}
	return af
}
