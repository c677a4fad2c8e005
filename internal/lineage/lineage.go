// Package lineage knows which goroutine started which, so that a report about
// a goroutine can be attributed to the test that (indirectly) started it.
//
// The runtime tells this only for live goroutines (the "created by ... in
// goroutine N" lines of runtime.Stack). Reports found after the fact, such as
// the trace checker's, are often about goroutines that have returned; the
// code that raises them learns their parents elsewhere (from the execution
// trace) and notes them here for the duration of the report's delivery.
package lineage

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
)

// noted holds the parents learned from elsewhere, each with the number of
// deliveries that need it. Goroutine ids are never reused, so a noted parent
// is a fact for as long as it is kept.
var noted = struct {
	mu sync.Mutex
	m  map[int64]note
}{m: map[int64]note{}}

type note struct {
	parent int64
	refs   int
}

// Note records that goroutine child was started by goroutine parent, until
// a matching Forget.
func Note(child, parent int64) {
	noted.mu.Lock()
	defer noted.mu.Unlock()
	n := noted.m[child]
	n.parent = parent
	n.refs++
	noted.m[child] = n
}

// Forget undoes one Note of child.
func Forget(child int64) {
	noted.mu.Lock()
	defer noted.mu.Unlock()
	n, ok := noted.m[child]
	if !ok {
		return
	}
	if n.refs--; n.refs <= 0 {
		delete(noted.m, child)
		return
	}
	noted.m[child] = n
}

// Noted returns the noted parent of child, if any.
func Noted(child int64) (parent int64, ok bool) {
	noted.mu.Lock()
	defer noted.mu.Unlock()
	n, ok := noted.m[child]
	return n.parent, ok
}

// Len returns the number of noted goroutines; tests use it to show that
// deliveries clean up.
func Len() int {
	noted.mu.Lock()
	defer noted.mu.Unlock()
	return len(noted.m)
}

// Live maps every live goroutine to the goroutine that created it, from the
// "created by ... in goroutine N" lines of runtime.Stack; a goroutine whose
// creator is unknown (the main goroutine) maps to 0.
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
		if !bytes.HasPrefix(line, []byte("created by ")) {
			continue
		}
		const in = " in goroutine "
		if i := bytes.LastIndex(line, []byte(in)); i >= 0 {
			if p, err := strconv.ParseInt(string(bytes.TrimSpace(line[i+len(in):])), 10, 64); err == nil {
				parents[current] = p
			}
		}
	}
	return parents
}
