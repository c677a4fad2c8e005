package splat_test

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/krules/krules/internal/splat"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// release is what the identity and dump lines print for the kernel release.
var release = "krules " + runtime.Version()

// cpu is the start of dump_stack's line: no CPU, the process's effective
// uid, and the pid 7.
var cpu = "CPU: - UID: " + strconv.FormatUint(uint64(uint32(os.Geteuid())), 10) + " PID: 7"

// keepTaint puts the taint back as it was when the test ends.
func keepTaint(t *testing.T) {
	was := splat.Tainted()
	t.Cleanup(func() {
		splat.ResetTaint()
		splat.AddTaint(was)
	})
}

// The taint is print_tainted's: "Not tainted" until the first flag is set,
// then "Tainted: " and a column for each of v6.12's 19 taint flags, 'G' for
// the unset 'P', 'B' for TAINT_BAD_PAGE (the sixth), 'W' for TAINT_WARN
// (the tenth) and blanks for the others; it follows the release under a
// lockdep headline (print_kernel_ident) and precedes it on dump_stack's
// CPU/UID/PID/Comm line, which v6.12 follows, once tainted, with
// print_tainted_verbose's line: the set flags in bit order, comma-separated.
func TestTaintShowsInTheIdentityAndDumpLines(t *testing.T) {
	keepTaint(t)
	dump := func() string {
		var b strings.Builder
		splat.Dump(&b, 7, "kworker/0:1", nil)
		return b.String()
	}
	splat.ResetTaint()
	require.Zero(t, splat.Tainted())
	require.Equal(t, release+" Not tainted", splat.Ident())
	require.Equal(t, "Not tainted "+release, splat.TaintRelease())
	require.Equal(t, "Not tainted", splat.PrintTainted())
	require.Equal(t, cpu+" Comm: kworker/0:1 Not tainted "+release+"\nCall Trace:\n <TASK>\n </TASK>\n", dump())
	splat.AddTaint(splat.TaintWarn)
	require.Equal(t, splat.TaintWarn, splat.Tainted())
	const tainted = "Tainted: G        W         "
	require.Len(t, tainted, len("Tainted: ")+19)
	require.Equal(t, release+" "+tainted, splat.Ident())
	require.Equal(t, tainted, splat.PrintTainted())
	require.Equal(t, tainted+" "+release, splat.TaintRelease())
	require.Equal(t, cpu+" Comm: kworker/0:1 "+tainted+" "+release+"\nTainted: [W]=WARN\nCall Trace:\n <TASK>\n </TASK>\n", dump())

	splat.ResetTaint()
	splat.AddTaint(splat.TaintBadPage)
	require.Equal(t, "Tainted: G    B"+strings.Repeat(" ", 13), splat.PrintTainted())
	require.Equal(t, "Tainted: [B]=BAD_PAGE", splat.PrintTaintedVerbose())
	splat.AddTaint(splat.TaintWarn)
	const both = "Tainted: G    B   W         "
	require.Len(t, both, len("Tainted: ")+19)
	require.Equal(t, both, splat.PrintTainted())
	require.Equal(t, cpu+" Comm: kworker/0:1 "+both+" "+release+"\nTainted: [B]=BAD_PAGE, [W]=WARN\nCall Trace:\n <TASK>\n </TASK>\n", dump())
}

// WARN()'s headline names the frame it blames as __warn does, file and line
// then the function and the offset of the return address into it.
func TestWarnHeadlineNamesTheFrameAndItsOffset(t *testing.T) {
	f := runtime.Frame{PC: 0x401c, Entry: 0x4000, Function: "example.com/drv.(*Dev).Bind", File: "/home/u/src/drv/dev.go", Line: 12}
	require.Equal(t, "WARNING: CPU: - PID: 42 at drv/dev.go:12 drv.(*Dev).Bind+0x1c", splat.WarnHeadline(42, f))
}

// A WARN() block: the cut-here rule, the message on its own lines (its
// trailing newlines dropped, as printk ends a line once), the headline,
// print_modules' line, the dump and the end-of-trace rule; with no
// message, no line for it.
func TestWarnLaysOutTheCutHereBlock(t *testing.T) {
	keepTaint(t)
	splat.ResetTaint()
	warn := func(message string) string {
		var b strings.Builder
		splat.Warn(&b, "WARNING: CPU: - PID: 7 at drv/dev.go:12 drv.Bind+0x1c", message, 7, "kworker/0:1", nil)
		return b.String()
	}
	// __warn: the headline, print_modules' line (no modules: nothing after
	// the colon), dump_stack, the end marker.
	rest := "WARNING: CPU: - PID: 7 at drv/dev.go:12 drv.Bind+0x1c\nModules linked in:\n" +
		cpu + " Comm: kworker/0:1 Not tainted " + release + "\nCall Trace:\n <TASK>\n </TASK>\n" +
		"---[ end trace 0000000000000000 ]---\n"
	require.Equal(t, "------------[ cut here ]------------\nsomething odd\non two lines\n"+rest, warn("something odd\non two lines\n\n"))
	require.Equal(t, "------------[ cut here ]------------\n"+rest, warn(""))
}

// show_trace_log_lvl prints a task's frames between " <TASK>" and
// " </TASK>", under "Call Trace:", one frame a line indented by a space.
func TestCallTraceFramesTheTasksStack(t *testing.T) {
	var b strings.Builder
	splat.CallTrace(&b, splat.FullStack(0))
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	require.GreaterOrEqual(t, len(lines), 4, b.String())
	require.Equal(t, []string{"Call Trace:", " <TASK>"}, lines[:2])
	require.Regexp(t, `^ splat_test\.TestCallTraceFramesTheTasksStack\+0x[0-9a-f]+ splat/splat_test\.go:\d+$`, lines[2])
	require.Equal(t, " </TASK>", lines[len(lines)-1])
	for _, l := range lines[2 : len(lines)-1] {
		require.NotContains(t, l, "TASK>", "one marker each side")
	}
}

type dev struct{}

//go:noinline
func (*dev) bind(out chan<- []uintptr) { out <- capture(20) }

// capture returns the stack from depth frames below its first call.
//
//go:noinline
func capture(depth int) []uintptr {
	if depth > 0 {
		return capture(depth - 1)
	}
	return splat.FullStack(0)
}

// FullStack starts at its caller's frame and reaches the goroutine's entry
// through a few dozen frames; a goroutine is named after the outermost
// function it runs, its package left out but not its receiver
// ("(*dev).bind"), a test goroutine after its test, and one with no frame
// at all "goroutine".
func TestEntryNameIsTheOutermostUserFunction(t *testing.T) {
	here := splat.FullStack(0)
	f, _ := runtime.CallersFrames(here).Next()
	require.Equal(t, "github.com/krules/krules/internal/splat_test.TestEntryNameIsTheOutermostUserFunction", f.Function)
	require.Equal(t, "TestEntryNameIsTheOutermostUserFunction", splat.EntryName(here))
	out := make(chan []uintptr)
	go (&dev{}).bind(out)
	require.Equal(t, "(*dev).bind", splat.EntryName(<-out))
	require.Equal(t, "goroutine", splat.EntryName(nil))
}
