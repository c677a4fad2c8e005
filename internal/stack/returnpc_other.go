//go:build !amd64

package stack

import "runtime"

// ReturnPC returns the return address of the function that calls it: the
// kernel's _RET_IP_, a site in that function's caller. This portable version
// walks the stack (about 150 ns); amd64 reads the frame pointer instead.
//
//go:noinline
func ReturnPC() uintptr {
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:])
	return pcs[0]
}

// OuterReturnPC returns the return address of the caller of the function
// that calls it: ReturnPC one frame further.
//
//go:noinline
func OuterReturnPC() uintptr {
	var pcs [1]uintptr
	runtime.Callers(4, pcs[:])
	return pcs[0]
}
