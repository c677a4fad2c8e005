//go:build amd64

package task

import (
	"unsafe"

	"github.com/petermattis/goid"
)

// SiteID returns the calling goroutine's id and the return address of the
// function that calls it (the kernel's _RET_IP_, as stack.ReturnPC): the lock
// hot paths need both, and one assembly call is half the price of two. id is
// 0 until the start-up check has run or when it failed; call ID then. The
// calling function must be //go:noinline.
func SiteID() (id int64, pc uintptr)

// GoID returns the calling goroutine's id read in place, as SiteID does, or
// 0 while that is not possible (call ID then).
func GoID() int64

func getgp() unsafe.Pointer

// goidOffset is where g.goid lies in the runtime's g, as goid.Get reads it;
// 0 while unknown. SiteID reads it.
var goidOffset uintptr

// locateGoid finds the offset of g.goid: the word of the g that holds what
// goid.Get returns, the same for the caller and for four new goroutines
// (whose ids all differ, so a field that merely happens to hold one id
// cannot qualify). It runs after goid.Get was checked against
// runtime.Stack, so the ids it matches are the runtime's own.
func locateGoid() uintptr {
	const probes, maxOffset = 4, 320
	candidates := func() []uintptr {
		gp, id := getgp(), goid.Get()
		var offs []uintptr
		for off := uintptr(8); off < maxOffset; off += 8 {
			if *(*int64)(unsafe.Add(gp, off)) == id {
				offs = append(offs, off)
			}
		}
		return offs
	}
	agreed := candidates()
	for range probes {
		ch := make(chan []uintptr)
		go func() { ch <- candidates() }()
		theirs := <-ch
		var both []uintptr
		for _, o := range agreed {
			for _, p := range theirs {
				if o == p {
					both = append(both, o)
				}
			}
		}
		agreed = both
	}
	if len(agreed) != 1 {
		return 0
	}
	return agreed[0]
}
