package stack

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// Files of the module's root package are printed module-relative, not
// with the checkout's folder name ("main/check.go", "fresh/check.go").
func TestShortFileIsModuleRelativeWhateverTheCheckoutIsCalled(t *testing.T) {
	_, here, _, _ := runtime.Caller(0)
	require.Equal(t, "stack/stack_test.go", ShortFile(here))
	require.Equal(t, "krules/check.go", ShortFile(moduleDir+"check.go"))
	require.Equal(t, "gfp/alloc.go", ShortFile(moduleDir+"gfp/alloc.go"))
	require.Equal(t, "drv/notifier.go", ShortFile("/home/u/src/drv/notifier.go"))
	require.Equal(t, "x.go", ShortFile("x.go"))
}

//go:noinline
func outerPCProbe() (inner, outer uintptr) { return outerPCProbe2() }

//go:noinline
func outerPCProbe2() (uintptr, uintptr) { return ReturnPC(), OuterReturnPC() }

// OuterReturnPC is ReturnPC one frame further, and TextOf finds the code
// that contains both a function's entry and the calls it makes.
func TestOuterReturnPCAndTextOf(t *testing.T) {
	inner, outer := outerPCProbe()
	require.Contains(t, FormatPC(inner), "outerPCProbe+")
	require.Contains(t, FormatPC(outer), "TestOuterReturnPCAndTextOf+")
	probe := TextOf(outerPCProbe)
	require.True(t, probe.Contains(inner))
	require.False(t, probe.Contains(outer))
	require.True(t, TextOf(TestOuterReturnPCAndTextOf).Contains(outer))
	require.Less(t, probe.Size, uintptr(4096))
}
