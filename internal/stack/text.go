package stack

import (
	"reflect"
	"runtime"
)

// Text is the machine code of one function: [Start, End).
type Text struct{ Start, End uintptr }

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
	return Text{start, end}
}

// Contains reports whether pc lies in t.
func (t Text) Contains(pc uintptr) bool { return pc-t.Start < t.End-t.Start }
