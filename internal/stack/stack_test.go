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

// A report's site is the first frame outside the library, and a test file
// is never library code, even in a library package: a report raised by a
// package's own test names the test's line, as the kernel's WARN names the
// line of the caller it blames.
func TestTestFilesAreNeverLibraryCode(t *testing.T) {
	require.True(t, IsLibrary(module+"/gfp.(*Zone).Alloc", "/src/krules/gfp/kmalloc.go"))
	require.False(t, IsLibrary(module+"/gfp.TestAlloc", "/src/krules/gfp/kmalloc_test.go"))
	require.False(t, IsLibrary("example.com/drv.(*Dev).Bind", "/src/drv/dev.go"))
}

// Function names print without their import path but with their package,
// as "gfp.(*Zone).Alloc", like the kernel's symbol names.
func TestShortFuncKeepsThePackage(t *testing.T) {
	require.Equal(t, "gfp.(*Zone).Alloc", ShortFunc(module+"/gfp.(*Zone).Alloc"))
	require.Equal(t, "main.main", ShortFunc("main.main"))
}

// A stack prints the caller's frames and stops before runtime.goexit, the
// frame every goroutine starts in, as the kernel's stack dump has no frame
// below the task's entry.
func TestStacksLeaveOutGoexit(t *testing.T) {
	out := make(chan string)
	go func() { out <- String(Callers(0), " ") }()
	s := <-out
	require.Contains(t, s, "TestStacksLeaveOutGoexit")
	require.NotContains(t, s, "goexit")
}

// A text range holds its first byte up to, not including, its end.
func TestTextContainsItsRangeOnly(t *testing.T) {
	x := Text{Start: 0x1000, Size: 0x10}
	require.True(t, x.Contains(0x1000))
	require.True(t, x.Contains(0x100f))
	require.False(t, x.Contains(0x1010))
	require.False(t, x.Contains(0xfff))
}

// Caller names the first frame outside the library at skip: a test's own
// frame, its caller one further. With no frame it can name in reach (skip
// beyond the end of the stack) it falls back to the first frame it found,
// here none at all, the zero Frame, rather than walking on or inventing one.
func TestCallerNamesTheFrameAtSkipOrFallsBack(t *testing.T) {
	here := Caller(0)
	require.Equal(t, "github.com/krules/krules/internal/stack.TestCallerNamesTheFrameAtSkipOrFallsBack", here.Function)
	require.Equal(t, "stack/stack_test.go", ShortFile(here.File))
	require.Equal(t, "testing.tRunner", Caller(1).Function)
	require.Equal(t, runtime.Frame{}, Caller(1000))
}
