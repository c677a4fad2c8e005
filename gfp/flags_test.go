package gfp_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
)

func TestFlagBitsAreTheKernels(t *testing.T) {
	for f, want := range map[gfp.Flags]uint32{
		gfp.DMA: 0x1, gfp.HighMem: 0x2, gfp.DMA32: 0x4, gfp.Movable: 0x8, gfp.Reclaimable: 0x10,
		gfp.High: 0x20, gfp.IO: 0x40, gfp.FS: 0x80, gfp.Zero: 0x100, gfp.DirectReclaim: 0x400,
		gfp.KswapdReclaim: 0x800, gfp.Write: 0x1000, gfp.NoWarn: 0x2000, gfp.RetryMayFail: 0x4000,
		gfp.NoFail: 0x8000, gfp.NoRetry: 0x10000, gfp.Memalloc: 0x20000, gfp.Comp: 0x40000,
		gfp.NoMemalloc: 0x80000, gfp.Hardwall: 0x100000, gfp.ThisNode: 0x200000,
		gfp.Account: 0x400000, gfp.ZeroTags: 0x800000, gfp.NoLockdep: 0x1000000,
	} {
		require.Equal(t, want, uint32(f), f.String())
	}
	// Masks as a kernel log prints them.
	require.Equal(t, uint32(0xcc0), uint32(gfp.Kernel))
	require.Equal(t, uint32(0x820), uint32(gfp.Atomic))
	require.Equal(t, uint32(0xc00), uint32(gfp.NoIO))
	require.Equal(t, uint32(0xc40), uint32(gfp.NoFS))
	require.Equal(t, uint32(0x2800), uint32(gfp.NoWait))
	require.Equal(t, uint32(0x100cc0), uint32(gfp.User))
	require.Equal(t, uint32(0x400cc0), uint32(gfp.KernelAccount))
	require.Equal(t, uint32(0x100cca), uint32(gfp.HighUserMovable))
}

func TestStringDecodesLikeTheKernel(t *testing.T) {
	for f, want := range map[gfp.Flags]string{
		0:                               "none",
		gfp.Kernel:                      "GFP_KERNEL",
		gfp.Kernel | gfp.Zero:           "GFP_KERNEL|__GFP_ZERO",
		gfp.Atomic:                      "GFP_ATOMIC",
		gfp.Atomic | gfp.NoWarn:         "GFP_ATOMIC|__GFP_NOWARN",
		gfp.NoWait:                      "GFP_NOWAIT",
		gfp.NoFS:                        "GFP_NOFS",
		gfp.NoIO:                        "GFP_NOIO",
		gfp.User:                        "GFP_USER",
		gfp.HighUserMovable:             "GFP_HIGHUSER_MOVABLE",
		gfp.TransHuge:                   "GFP_TRANSHUGE",
		gfp.TransHugeLight:              "GFP_TRANSHUGE_LIGHT",
		gfp.KernelAccount:               "GFP_KERNEL_ACCOUNT",
		gfp.DirectReclaim:               "__GFP_DIRECT_RECLAIM",
		gfp.KswapdReclaim:               "__GFP_KSWAPD_RECLAIM",
		gfp.Kernel &^ gfp.DirectReclaim: "__GFP_IO|__GFP_FS|__GFP_KSWAPD_RECLAIM",
		gfp.NoFS | gfp.NoFail:           "GFP_NOFS|__GFP_NOFAIL",
		gfp.Kernel | gfp.NoRetry | gfp.NoWarn | gfp.NoMemalloc: "GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY|__GFP_NOMEMALLOC",
		gfp.Flags(0x200):              "0x200",
		gfp.Kernel | gfp.Flags(1<<30): "GFP_KERNEL|0x40000000",
		gfp.NoLockdep | gfp.Kernel:    "GFP_KERNEL|__GFP_NOLOCKDEP",
		// GFP_NOIO comes before GFP_NOWAIT in gfpflag_names: both match
		// here, and the kernel prints the former.
		gfp.NoIO | gfp.NoWarn: "GFP_NOIO|__GFP_NOWARN",
	} {
		require.Equal(t, want, f.String(), "%#x", uint32(f))
	}
}

func TestPredicates(t *testing.T) {
	require.True(t, gfp.Kernel.AllowsBlocking())
	require.False(t, gfp.Atomic.AllowsBlocking())
	require.False(t, gfp.NoWait.AllowsBlocking())
	require.True(t, gfp.Atomic.AllowsSpinning())
	require.False(t, gfp.Flags(0).AllowsSpinning())
	require.True(t, gfp.Kernel.HasIOFS())
	require.False(t, gfp.NoFS.HasIOFS())
	require.True(t, gfp.NoFS.CompactionAllowed())
	require.False(t, gfp.NoIO.CompactionAllowed())
	require.Equal(t, gfp.Kernel|gfp.NoRetry|gfp.NoMemalloc|gfp.NoWarn, (gfp.Kernel | gfp.Zero | gfp.Account).Nested())
	require.True(t, gfp.Kernel.Valid())
	require.False(t, gfp.Flags(1<<31).Valid())
}

// gfp_nested_mask keeps __GFP_NOLOCKDEP: an allocation made inside one
// that asked not to be tracked by lockdep is not tracked either.
func TestNestedKeepsNoLockdep(t *testing.T) {
	require.Equal(t, gfp.Kernel|gfp.NoLockdep|gfp.NoRetry|gfp.NoMemalloc|gfp.NoWarn, (gfp.Kernel | gfp.NoLockdep).Nested())
	require.Equal(t, gfp.Atomic|gfp.NoRetry|gfp.NoMemalloc|gfp.NoWarn, (gfp.Atomic | gfp.Account | gfp.Comp).Nested())
}

// __GFP_BITS_MASK covers every defined bit up to __GFP_NOLOCKDEP, the last
// one in a lockdep kernel, and nothing above it.
func TestValidCoversExactlyTheDefinedBits(t *testing.T) {
	require.Equal(t, 2*gfp.NoLockdep-1, gfp.BitsMask)
	require.True(t, gfp.NoLockdep.Valid())
	require.True(t, gfp.BitsMask.Valid())
	require.False(t, (2 * gfp.NoLockdep).Valid())
}
