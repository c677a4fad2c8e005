//go:build !krules_nolockdep

package krulestest

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/stretchr/testify/require"

	"github.com/krules/krules/lockclass"
)

// runFunc stands in for a *testing.M.
type runFunc func() int

func (f runFunc) Run() int { return f() }

// contendOnce makes one goroutine wait for a lock another holds for 20 ms,
// on the default validator: one contention, waited at least that long.
func contendOnce() int {
	var m lockclass.Mutex
	m.Init(lockclass.WithName("profiled_lock"))
	m.Lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		waitForProfiledLock(&m)
	}()
	time.Sleep(20 * time.Millisecond)
	m.Unlock()
	<-done
	return 0
}

//go:noinline
func waitForProfiledLock(m *lockclass.Mutex) {
	m.Lock()
	m.Unlock()
}

// waitsIn reads the profile at path and returns the contentions and the
// nanoseconds waited by stacks through fn.
func waitsIn(t *testing.T, path, fn string) (count, ns int64) {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	p, err := profile.Parse(f)
	require.NoError(t, err)
	require.Equal(t, "contentions", p.SampleType[0].Type)
	for _, s := range p.Sample {
		for _, loc := range s.Location {
			for _, l := range loc.Line {
				if strings.HasSuffix(l.Function.Name, fn) {
					count += s.Value[0]
					ns += s.Value[1]
				}
			}
		}
	}
	return count, ns
}

func TestContentionProfileIsWrittenAfterTheTests(t *testing.T) {
	defer lockclass.Default().ClearLockStat()
	path := filepath.Join(t.TempDir(), "contention.pb.gz")
	var o options
	ContentionProfile(path)(&o)
	require.Zero(t, packageRun{runFunc(contendOnce), o}.Run())
	require.False(t, lockclass.SetLockStat(false), "lock_stat is back off after the run")
	count, ns := waitsIn(t, path, "waitForProfiledLock")
	require.Equal(t, int64(1), count)
	require.GreaterOrEqual(t, ns, int64(10*time.Millisecond))
}

func TestContentionProfileFlag(t *testing.T) {
	defer lockclass.Default().ClearLockStat()
	require.NotNil(t, flag.Lookup(contentionFlag), "VerifyTestMain defines the flag")
	path := filepath.Join(t.TempDir(), "flag.pb.gz")
	require.NoError(t, flag.Set(contentionFlag, path))
	defer flag.Set(contentionFlag, "")
	require.Zero(t, packageRun{runFunc(contendOnce), options{}}.Run())
	count, _ := waitsIn(t, path, "waitForProfiledLock")
	require.Equal(t, int64(1), count)
}

func TestNoContentionProfileUnlessAsked(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	require.Zero(t, packageRun{runFunc(func() int { return 0 }), options{}}.Run())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries)
}
