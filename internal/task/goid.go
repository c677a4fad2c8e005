package task

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/petermattis/goid"
)

// Goroutine identity. goid.Get reads g.goid at a fixed offset of the
// runtime's g struct: about a nanosecond, but that offset has broken on new
// Go releases before (go-deadlock #34, #45; goid #63). So the first caller
// checks it against the id the runtime prints in runtime.Stack, on itself and
// on a few fresh goroutines, and the whole process falls back to parsing
// runtime.Stack (about 1.5 µs) if they ever disagree.

const (
	modeUnverified int32 = iota
	modeFast
	modeSlow
)

var (
	idMode     atomic.Int32
	verifyOnce sync.Once
	slowReason atomic.Pointer[string]
)

// ID returns the id of the calling goroutine.
func ID() int64 {
	if idMode.Load() == modeFast {
		return goid.Get()
	}
	return slowID()
}

//go:noinline
func slowID() int64 {
	if idMode.Load() == modeUnverified {
		verify()
	}
	if idMode.Load() == modeFast {
		return goid.Get()
	}
	return StackID()
}

// SlowPath reports whether goroutine ids come from runtime.Stack, and why.
func SlowPath() (bool, string) {
	if idMode.Load() == modeUnverified {
		verify()
	}
	if idMode.Load() == modeSlow {
		return true, *slowReason.Load()
	}
	return false, ""
}

func verify() {
	verifyOnce.Do(func() {
		if why := checkFastID(); why != "" {
			slowReason.Store(&why)
			idMode.Store(modeSlow)
			return
		}
		idMode.Store(modeFast)
		goidOffset = locateGoid()
	})
}

// checkFastID compares goid.Get with runtime.Stack on the caller and on four
// new goroutines; it returns why they disagree, or "".
func checkFastID() string {
	const probes = 4
	type result struct{ fast, slow int64 }
	results := make([]result, probes+1)
	results[0] = result{goid.Get(), StackID()}
	var wg sync.WaitGroup
	for i := 1; i <= probes; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = result{goid.Get(), StackID()}
		}()
	}
	wg.Wait()
	seen := make(map[int64]bool, len(results))
	for _, r := range results {
		if r.fast != r.slow || r.slow <= 0 {
			return fmt.Sprintf("goid.Get() returned %d but runtime.Stack says goroutine %d (%s)", r.fast, r.slow, runtime.Version())
		}
		if seen[r.fast] {
			return fmt.Sprintf("goid.Get() returned id %d for two live goroutines (%s)", r.fast, runtime.Version())
		}
		seen[r.fast] = true
	}
	return ""
}

// StackID parses the calling goroutine's id from the header runtime.Stack
// writes ("goroutine 42 [running]:"). It is the slow, always-correct path.
func StackID() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return -1
	}
	return id
}

// ForceSlowPath switches the process to the runtime.Stack path as if the
// start-up check had failed, and returns a function that undoes it. Tests use
// it to exercise the fallback and its warning.
func ForceSlowPath(reason string) (restore func()) {
	verify()
	prevMode, prevReason := idMode.Load(), slowReason.Load()
	prevOffset := goidOffset
	slowReason.Store(&reason)
	idMode.Store(modeSlow)
	goidOffset = 0
	return func() {
		slowReason.Store(prevReason)
		idMode.Store(prevMode)
		goidOffset = prevOffset
	}
}
