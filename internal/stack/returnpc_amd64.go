package stack

// ReturnPC returns the return address of the function that calls it: the
// kernel's _RET_IP_, a site in that function's caller. It costs about a
// nanosecond. The calling function must not be inlined (mark it
// //go:noinline), or the site is one frame too high.
func ReturnPC() uintptr

// OuterReturnPC returns the return address of the caller of the function
// that calls it: ReturnPC one frame further. Both functions must not be
// inlined.
func OuterReturnPC() uintptr
