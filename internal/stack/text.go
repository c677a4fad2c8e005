package stack

import (
	"reflect"
	"runtime"
)

// Text is the machine code of one function: [Start, Start+Size). It keeps
// the size rather than the end so that Contains is one subtraction and one
// compare with a word in memory: Mutex.Lock's test of its caller's site,
// and a Mutex pair, 2 instructions shorter (cachegrind, AMD EPYC (Zen 3,
// KVM)).
type Text struct{ Start, Size uintptr }

// TextOf returns the code of fn, a func value of a top-level function or a
// method expression, found by asking the runtime which function each byte
// after its entry belongs to (once, at start-up: a few microseconds).
func TextOf(fn any) Text {
	f := runtime.FuncForPC(reflect.ValueOf(fn).Pointer())
	if f == nil {
		return Text{}
	}
	start := f.Entry()
	end := start
	for end-start < 1<<16 {
		if g := runtime.FuncForPC(end); g == nil || g.Entry() != start {
			break
		}
		end++
	}
	return Text{start, end - start}
}

// Contains reports whether pc lies in t.
func (t Text) Contains(pc uintptr) bool { return pc-t.Start < t.Size }
