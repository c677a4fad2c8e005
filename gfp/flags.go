package gfp

import (
	"strconv"
	"strings"
)

// Flags is a GFP mask (the kernel's gfp_t): what an allocation may do to
// find memory (sleep, reclaim, do I/O, call into filesystems, dip into the
// reserves) and how it behaves when it cannot (warn, retry, fail).
//
// The bits are the kernel's, in the kernel's order (include/linux/gfp_types.h
// of a kernel built with CONFIG_LOCKDEP and without CONFIG_KASAN_HW_TAGS), so
// a mode printed by a report reads the same as in a kernel log.
type Flags uint32

// The individual bits (the kernel's __GFP_* flags).
const (
	// DMA is __GFP_DMA: use ZONE_DMA. A plain bit here (a Zone has one type).
	DMA Flags = 1 << iota
	// HighMem is __GFP_HIGHMEM: highmem may be used. A plain bit here.
	HighMem
	// DMA32 is __GFP_DMA32: use ZONE_DMA32. A plain bit here.
	DMA32
	// Movable is __GFP_MOVABLE: the page can be migrated or reclaimed.
	Movable
	// Reclaimable is __GFP_RECLAIMABLE: slab pages freeable by shrinkers.
	Reclaimable
	// High is __GFP_HIGH: high priority; may use half of the min reserve
	// (ALLOC_MIN_RESERVE), and more when it cannot block.
	High
	// IO is __GFP_IO: reclaim may start physical I/O.
	IO
	// FS is __GFP_FS: reclaim may call into filesystems. An allocation with
	// FS that may reclaim is ordered after every lock it holds by the
	// fs_reclaim lock map (MightAlloc).
	FS
	// Zero is __GFP_ZERO: return zeroed memory.
	Zero
	bitUnused // 0x200, unused since v6.x
	// DirectReclaim is __GFP_DIRECT_RECLAIM: the caller may enter direct
	// reclaim, which means it may sleep.
	DirectReclaim
	// KswapdReclaim is __GFP_KSWAPD_RECLAIM: wake kswapd when the low
	// watermark is hit.
	KswapdReclaim
	// Write is __GFP_WRITE: the caller will dirty the page. A plain bit here.
	Write
	// NoWarn is __GFP_NOWARN: no failure report, no WARN_ON_ONCE_GFP, no
	// fault-injection printout.
	NoWarn
	// RetryMayFail is __GFP_RETRY_MAYFAIL: retry while reclaim makes
	// progress, then fail; the OOM hook is not called.
	RetryMayFail
	// NoFail is __GFP_NOFAIL: retry forever. It needs DirectReclaim and an
	// order of at most 1.
	NoFail
	// NoRetry is __GFP_NORETRY: one light reclaim attempt, then fail.
	NoRetry
	// Memalloc is __GFP_MEMALLOC: ignore the watermarks entirely
	// (ALLOC_NO_WATERMARKS). For callers that will free memory soon.
	Memalloc
	// Comp is __GFP_COMP: compound-page metadata. A plain bit here.
	Comp
	// NoMemalloc is __GFP_NOMEMALLOC: never use the emergency reserves; it
	// wins over Memalloc and over a NoReclaim (PF_MEMALLOC) scope.
	NoMemalloc
	// Hardwall is __GFP_HARDWALL: enforce the cpuset. A plain bit here.
	Hardwall
	// ThisNode is __GFP_THISNODE: no fallback to other nodes. A plain bit
	// here, except that it keeps the OOM hook out, as in the kernel.
	ThisNode
	// Account is __GFP_ACCOUNT: charge to kmemcg. A plain bit here.
	Account
	// ZeroTags is __GFP_ZEROTAGS: an MTE detail. A plain bit here.
	ZeroTags
	// NoLockdep is __GFP_NOLOCKDEP: MightAlloc does not touch the
	// fs_reclaim and notifier lock maps.
	NoLockdep
)

// Reclaim is __GFP_RECLAIM: both reclaim bits.
const Reclaim = DirectReclaim | KswapdReclaim

// The composite masks (the kernel's GFP_*).
const (
	// Atomic is GFP_ATOMIC: cannot sleep, may use 62.5% of the min reserve,
	// wakes kswapd.
	Atomic = High | KswapdReclaim
	// Kernel is GFP_KERNEL: the normal blocking allocation.
	Kernel = Reclaim | IO | FS
	// KernelAccount is GFP_KERNEL_ACCOUNT.
	KernelAccount = Kernel | Account
	// NoWait is GFP_NOWAIT: cannot sleep, no reserve discount, wakes kswapd,
	// does not warn (the 2025 definition; older kernels lack NoWarn).
	NoWait = KswapdReclaim | NoWarn
	// NoIO is GFP_NOIO: may reclaim, but without I/O or filesystems.
	NoIO = Reclaim
	// NoFS is GFP_NOFS: may reclaim and do I/O, but not call filesystems.
	NoFS = Reclaim | IO
	// User is GFP_USER.
	User = Reclaim | IO | FS | Hardwall
	// HighUser is GFP_HIGHUSER.
	HighUser = User | HighMem
	// HighUserMovable is GFP_HIGHUSER_MOVABLE (__GFP_SKIP_KASAN is 0
	// without CONFIG_KASAN_HW_TAGS).
	HighUserMovable = HighUser | Movable
	// TransHugeLight is GFP_TRANSHUGE_LIGHT: no reclaim, no kswapd.
	TransHugeLight = (HighUserMovable | Comp | NoMemalloc | NoWarn) &^ Reclaim
	// TransHuge is GFP_TRANSHUGE.
	TransHuge = TransHugeLight | DirectReclaim
	// DMAMask is GFP_DMA (the same bit as __GFP_DMA).
	DMAMask = DMA
	// DMA32Mask is GFP_DMA32.
	DMA32Mask = DMA32
)

// bitsShift is __GFP_BITS_SHIFT: the number of defined bits.
const bitsShift = 25

// BitsMask covers every defined bit (__GFP_BITS_MASK).
const BitsMask Flags = 1<<bitsShift - 1

// flagNames is the kernel's decoding table (gfpflag_names): composite masks
// first, most bits first, then the single bits in bit order. String takes
// the first entry whose bits are all set, removes them and goes on.
var flagNames = [...]struct {
	mask Flags
	name string
}{
	{TransHuge, "GFP_TRANSHUGE"},
	{TransHugeLight, "GFP_TRANSHUGE_LIGHT"},
	{HighUserMovable, "GFP_HIGHUSER_MOVABLE"},
	{HighUser, "GFP_HIGHUSER"},
	{User, "GFP_USER"},
	{KernelAccount, "GFP_KERNEL_ACCOUNT"},
	{Kernel, "GFP_KERNEL"},
	{NoFS, "GFP_NOFS"},
	{Atomic, "GFP_ATOMIC"},
	{NoIO, "GFP_NOIO"},
	{NoWait, "GFP_NOWAIT"},
	{DMAMask, "GFP_DMA"},
	{DMA32Mask, "GFP_DMA32"},
	{Reclaim, "__GFP_RECLAIM"},
	{DMA, "__GFP_DMA"},
	{HighMem, "__GFP_HIGHMEM"},
	{DMA32, "__GFP_DMA32"},
	{Movable, "__GFP_MOVABLE"},
	{Reclaimable, "__GFP_RECLAIMABLE"},
	{High, "__GFP_HIGH"},
	{IO, "__GFP_IO"},
	{FS, "__GFP_FS"},
	{Zero, "__GFP_ZERO"},
	{DirectReclaim, "__GFP_DIRECT_RECLAIM"},
	{KswapdReclaim, "__GFP_KSWAPD_RECLAIM"},
	{Write, "__GFP_WRITE"},
	{NoWarn, "__GFP_NOWARN"},
	{RetryMayFail, "__GFP_RETRY_MAYFAIL"},
	{NoFail, "__GFP_NOFAIL"},
	{NoRetry, "__GFP_NORETRY"},
	{Memalloc, "__GFP_MEMALLOC"},
	{Comp, "__GFP_COMP"},
	{NoMemalloc, "__GFP_NOMEMALLOC"},
	{Hardwall, "__GFP_HARDWALL"},
	{ThisNode, "__GFP_THISNODE"},
	{Account, "__GFP_ACCOUNT"},
	{ZeroTags, "__GFP_ZEROTAGS"},
	{NoLockdep, "__GFP_NOLOCKDEP"},
}

// String decodes the mask the way the kernel prints one (show_gfp_flags):
// "GFP_KERNEL|__GFP_ZERO", with bits no name covers left as a hex number,
// and "none" for 0.
func (f Flags) String() string {
	if f == 0 {
		return "none"
	}
	return f.decode()
}

// decode is the kernel's %pGg: like String, but empty for 0.
func (f Flags) decode() string {
	var b strings.Builder
	for _, n := range flagNames {
		if f == 0 {
			break
		}
		if f&n.mask != n.mask {
			continue
		}
		b.WriteString(n.name)
		f &^= n.mask
		if f != 0 {
			b.WriteByte('|')
		}
	}
	if f != 0 {
		b.WriteString("0x")
		b.WriteString(strconv.FormatUint(uint64(f), 16))
	}
	return b.String()
}

// AllowsBlocking reports whether the mask allows direct reclaim, and so
// sleeping: gfpflags_allow_blocking().
func (f Flags) AllowsBlocking() bool { return f&DirectReclaim != 0 }

// AllowsSpinning reports whether either reclaim bit is set:
// gfpflags_allow_spinning(). Only a mask with neither ("trylock only") may
// not spin on the allocator's locks.
func (f Flags) AllowsSpinning() bool { return f&Reclaim != 0 }

// HasIOFS reports whether both IO and FS are set: gfp_has_io_fs().
func (f Flags) HasIOFS() bool { return f&(IO|FS) == IO|FS }

// CompactionAllowed reports whether IO is set: gfp_compaction_allowed().
func (f Flags) CompactionAllowed() bool { return f&IO != 0 }

// Nested returns the mask for an allocation made inside an allocation:
// gfp_nested_mask(). It keeps the GFP_KERNEL, GFP_ATOMIC and NoLockdep bits
// and adds NoRetry, NoMemalloc and NoWarn.
func (f Flags) Nested() Flags {
	return f&(Kernel|Atomic|NoLockdep) | NoRetry | NoMemalloc | NoWarn
}

// Valid reports whether the mask has no bit outside BitsMask.
func (f Flags) Valid() bool { return f&^BitsMask == 0 }
