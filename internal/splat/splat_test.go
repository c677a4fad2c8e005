package splat_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/krules/krules/internal/splat"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The taint is print_tainted's: "Not tainted" until the first WARN or BUG,
// then TAINT_WARN's "Tainted: G        W"; it follows the release under a
// lockdep headline (print_kernel_ident) and precedes it on dump_stack's
// CPU/PID/Comm line.
func TestTaintShowsInTheIdentityAndDumpLines(t *testing.T) {
	defer func(was bool) {
		if was {
			splat.Taint()
		} else {
			splat.ResetTaint()
		}
	}(splat.Tainted())
	release := "krules " + runtime.Version()
	dump := func() string {
		var b strings.Builder
		splat.Dump(&b, 7, "kworker/0:1", nil)
		return b.String()
	}
	splat.ResetTaint()
	require.False(t, splat.Tainted())
	require.Equal(t, release+" Not tainted", splat.Ident())
	require.Equal(t, "CPU: - PID: 7 Comm: kworker/0:1 Not tainted "+release+"\nCall Trace:\n", dump())
	splat.Taint()
	require.True(t, splat.Tainted())
	require.Equal(t, release+" Tainted: G        W", splat.Ident())
	require.Equal(t, "CPU: - PID: 7 Comm: kworker/0:1 Tainted: G        W "+release+"\nCall Trace:\n", dump())
}
