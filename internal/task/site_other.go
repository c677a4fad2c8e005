//go:build !amd64

package task

import "runtime"

// SiteID returns the calling goroutine's id and the return address of the
// function that calls it (the kernel's _RET_IP_, as stack.ReturnPC). This
// portable version returns id 0 (call ID) and walks the stack for pc.
//
//go:noinline
func SiteID() (id int64, pc uintptr) {
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:])
	return 0, pcs[0]
}

// GoID returns 0 here: call ID.
func GoID() int64 { return 0 }

var goidOffset uintptr

func locateGoid() uintptr { return 0 }
