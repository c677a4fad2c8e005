// Package lineage knows which goroutine started which, so that a report
// about a goroutine can be attributed to the claim (the test, the Collect)
// whose goroutine started it, directly or not.
//
// The runtime tells this only for live goroutines, in the "created by ...
// in goroutine N" lines of runtime.Stack. Code that raises a report about a
// goroutine that may have returned (the trace checker) learns its parents
// elsewhere and carries them on the report (krules.Report.Lineage).
package lineage

import (
	"bytes"
	"runtime"
	"strconv"
)

// Parent returns the goroutine that started the calling goroutine, from its
// own stack (runtime.Stack(buf, false): microseconds, no stop of the
// world). ok is false for the main goroutine and for one the runtime does
// not name a creator for.
func Parent() (parent int64, ok bool) {
	buf := make([]byte, 4<<10)
	for {
		n := runtime.Stack(buf, false)
		if n < len(buf) || len(buf) >= 1<<20 {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return createdIn(buf)
}

const createdBy, inGoroutine = "created by ", " in goroutine "

// createdIn parses the creator from the last "created by" line of one
// goroutine's stack dump.
func createdIn(dump []byte) (int64, bool) {
	i := bytes.LastIndex(dump, []byte(createdBy))
	if i < 0 {
		return 0, false
	}
	line := dump[i:]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	k := bytes.LastIndex(line, []byte(inGoroutine))
	if k < 0 {
		return 0, false
	}
	p, err := strconv.ParseInt(string(bytes.TrimSpace(line[k+len(inGoroutine):])), 10, 64)
	return p, err == nil && p > 0
}

// Live maps every live goroutine to the goroutine that created it, from the
// "created by ... in goroutine N" lines of runtime.Stack; a goroutine whose
// creator is unknown (the main goroutine) maps to 0. It stops the world for
// as long as the dump takes: keep it off hot paths.
func Live() map[int64]int64 {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	parents := map[int64]int64{}
	var current int64
	for _, line := range bytes.Split(buf, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("goroutine ")); ok {
			if i := bytes.IndexByte(rest, ' '); i > 0 {
				if id, err := strconv.ParseInt(string(rest[:i]), 10, 64); err == nil {
					current = id
					parents[id] = 0
				}
			}
			continue
		}
		if bytes.HasPrefix(line, []byte(createdBy)) {
			if p, ok := createdIn(line); ok {
				parents[current] = p
			}
		}
	}
	return parents
}
