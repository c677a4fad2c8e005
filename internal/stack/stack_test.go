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
