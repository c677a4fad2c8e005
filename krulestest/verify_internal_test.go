//go:build !krules_nolockdep

package krulestest

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/lineage"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mempool"
)

// A report no test claimed fails the package, even a single one; without
// one the run keeps the tests' code.
func TestAnUnclaimedReportFailsThePackage(t *testing.T) {
	require.Equal(t, 1, packageRun{runFunc(func() int {
		krules.Emit(krules.Warn(krules.MempoolMisuse, "claimed by no test", 0))
		return 0
	}), options{}}.Run())
	require.Zero(t, packageRun{runFunc(func() int { return 0 }), options{}}.Run())
}

// A goroutine that returned holding a lock during the tests is reaped
// before the package's fallback claim closes, so its report fails the
// package rather than going by unclaimed.
func TestLocksLeftByAReturnedGoroutineFailThePackage(t *testing.T) {
	require.Equal(t, 1, packageRun{runFunc(func() int {
		var m lockclass.Mutex
		ids := make(chan int64)
		go func() {
			m.Lock()
			ids <- krules.CurrentGoroutine().ID
		}()
		id := <-ids
		require.Eventually(t, func() bool { _, alive := lineage.Live()[id]; return !alive }, 5*time.Second, time.Millisecond)
		return 0
	}), options{}}.Run())
}

// A contention profile that cannot be written fails the package.
func TestAnUnwritableContentionProfileFailsThePackage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "contention.pb.gz")
	require.Equal(t, 1, packageRun{runFunc(func() int { return 0 }), options{contention: path}}.Run())
}

// MempoolDebug turns mempool's debug mode on for the run only: the
// setting the binary had comes back when the tests end.
func TestMempoolDebugIsPutBackAfterTheRun(t *testing.T) {
	prev := mempool.SetDefaultDebug(false)
	defer mempool.SetDefaultDebug(prev)
	var during bool
	require.Zero(t, packageRun{runFunc(func() int {
		during = mempool.SetDefaultDebug(true)
		return 0
	}), options{mempoolDebug: true}}.Run())
	require.True(t, during)
	require.False(t, mempool.SetDefaultDebug(false), "off again after the run")
}
