// Package stack captures and prints call stacks the way kernel reports do,
// and finds the first frame outside krules so that a report names the
// user's call site, not the library's.
package stack

import (
	"fmt"
	"runtime"
	"strings"
)

const module = "github.com/krules/krules"

// libraryPackages are the packages whose frames reports skip: the library
// itself, not its tests, examples or the bench program.
var libraryPackages = []string{
	module + ".", module + "/internal/", module + "/nonblock.", module + "/lockclass.",
	module + "/gfp.", module + "/mempool.", module + "/mmnotifier.", module + "/dmafence.",
}

// IsLibrary reports whether a frame belongs to the library proper.
func IsLibrary(fn, file string) bool {
	if strings.HasSuffix(file, "_test.go") {
		return false
	}
	for _, p := range libraryPackages {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

// Callers returns the program counters of the calling goroutine's stack,
// starting skip frames above the caller of Callers.
func Callers(skip int) []uintptr {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(skip+2, pcs)
	return pcs[:n:n]
}

// Caller returns the first frame outside the library, at or above skip
// frames above the caller of Caller. It is what "at FILE:LINE" names. A
// goroutine that runs library code only (one started on a library
// function) has none, and gets the frame at skip: the library's own site,
// as a kernel thread's warning names the kernel function, not the
// goroutine's runtime.goexit.
// Frames, not PCs, because an inlined library function shares its PC with
// the user function it was inlined into.
func Caller(skip int) runtime.Frame {
	var pcs [32]uintptr
	n := runtime.Callers(skip+2, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	var first runtime.Frame
	for {
		f, more := frames.Next()
		if first.PC == 0 {
			first = f
		}
		if f.Function != "" && f.Function != "runtime.goexit" && !IsLibrary(f.Function, f.File) {
			return f
		}
		if !more {
			return first
		}
	}
}

// FormatFrame prints a frame as "pkg.Func+0x1c file.go:12".
func FormatFrame(f runtime.Frame) string {
	if f.Function == "" {
		return fmt.Sprintf("0x%x", f.PC)
	}
	return fmt.Sprintf("%s+0x%x %s:%d", ShortFunc(f.Function), f.PC-f.Entry, ShortFile(f.File), f.Line)
}

// FileLineOf returns "dir/file.go:12" for a frame.
func FileLineOf(f runtime.Frame) string {
	return fmt.Sprintf("%s:%d", ShortFile(f.File), f.Line)
}

// FormatPC prints a return address (from ReturnPC or Callers) as the
// kernel prints %pS, with the source line: "pkg.Func+0x1c file.go:12", or
// "0x0" for none.
func FormatPC(pc uintptr) string {
	if pc == 0 {
		return "0x0"
	}
	return FormatFrame(frame(pc))
}

// Format writes a call trace, one frame a line, indented like the kernel's
// dump_stack ("Call Trace:" is the caller's to print).
func Format(b *strings.Builder, pcs []uintptr, indent string) {
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		if f.Function != "" && f.Function != "runtime.goexit" {
			fmt.Fprintf(b, "%s%s+0x%x %s:%d\n", indent, ShortFunc(f.Function), f.PC-f.Entry, ShortFile(f.File), f.Line)
		}
		if !more {
			return
		}
	}
}

// String returns Format's output as a string.
func String(pcs []uintptr, indent string) string {
	var b strings.Builder
	Format(&b, pcs, indent)
	return b.String()
}

// frame resolves a return address to the innermost (possibly inlined)
// function at its call instruction, passing over a lock's own wrapper
// inlined there (lockclass's Mutex.Lock is, for the compare-and-swap it
// does inline; dmafence's Resv.Lock and kin are, as dma_resv_lock is a
// static inline around ww_mutex_lock): the site it names is its caller's,
// as the kernel's _RET_IP_ in mutex_lock names mutex_lock's caller, and
// in ww_mutex_lock dma_resv_lock's.
//
// The trailing 0 is not a frame: runtime.Frames adds the frame an inlined
// call sits in only when another PC follows, and skips a 0.
func frame(pc uintptr) runtime.Frame {
	frames := runtime.CallersFrames([]uintptr{pc, 0})
	f, more := frames.Next()
	for more && isLockWrapper(f.Function) {
		f, more = frames.Next()
	}
	return f
}

// isLockWrapper reports whether fn is a lock's own code, which a lock
// site passes over when it is inlined into its caller.
func isLockWrapper(fn string) bool {
	return strings.HasPrefix(fn, module+"/lockclass.") || strings.HasPrefix(fn, module+"/dmafence.(*Resv).")
}

// ShortFunc drops the module path: "github.com/a/b/pkg.(*T).M" -> "pkg.(*T).M".
func ShortFunc(fn string) string {
	if i := strings.LastIndexByte(fn, '/'); i >= 0 {
		return fn[i+1:]
	}
	return fn
}

// ShortFile keeps the last directory and the base name ("gfp/alloc.go"),
// except that a file of the module's root directory is named after the
// module ("krules/check.go"), wherever the checkout lives and whatever its
// folder is called.
func ShortFile(file string) string {
	if rest, ok := strings.CutPrefix(file, moduleDir); ok && !strings.Contains(rest, "/") {
		return "krules/" + rest
	}
	i := strings.LastIndexByte(file, '/')
	if i < 0 {
		return file
	}
	if j := strings.LastIndexByte(file[:i], '/'); j >= 0 {
		return file[j+1:]
	}
	return file
}

// moduleDir is the module's root directory as the compiler recorded it,
// with a trailing slash: this file's directory minus internal/stack.
var moduleDir = func() string {
	_, file, _, ok := runtime.Caller(0)
	dir, found := strings.CutSuffix(file, "internal/stack/stack.go")
	if !ok || !found {
		return "\x00" // matches no file
	}
	return dir
}()
