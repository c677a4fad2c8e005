//go:build krules_nolockdep

package lockclass_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// With validation compiled out the locks are plain locks: an inversion
// goes unreported and nothing is tracked.
func TestCompiledOutLocksArePlain(t *testing.T) {
	krulestest.Check(t)
	require.False(t, lockclass.IsEnabled())
	var a, b lockclass.Mutex
	a.Init()
	b.Init()
	a.Lock()
	b.Lock()
	require.Nil(t, task.Lookup())
	b.Unlock()
	a.Unlock()
	b.Lock()
	a.Lock()
	a.Unlock()
	b.Unlock()
	var s lockclass.RWSem
	s.RLock()
	s.RUnlock()
	m := lockclass.NewMap("fs_reclaim")
	m.Acquire()
	m.Release()
}

// A CONFIG_LOCKDEP=n kernel has no /proc/lockdep, lockdep_chains,
// lockdep_stats or lock_stat (lockdep_proc.c is built only with lockdep)
// and no SysRq-d: the views of those files fail as opening them would,
// writing nothing, and the handler does not find them; debug_show_all_locks
// is an empty inline, so ShowAllLocks writes nothing, even with a lock held;
// and lock_stat, which needs lockdep, never turns on.
func TestCompiledOutHasNoLockdepFiles(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.Default()
	for name, write := range map[string]func(io.Writer) error{
		"lockdep":        v.WriteClasses,
		"lockdep_chains": v.WriteChains,
		"lockdep_stats":  v.WriteStats,
		"lock_stat":      v.WriteLockStat,
	} {
		var out strings.Builder
		err := write(&out)
		require.ErrorIs(t, err, fs.ErrNotExist, name)
		require.EqualError(t, err, "open /proc/"+name+": file does not exist")
		require.Empty(t, out.String(), name)
	}

	h := lockclass.Handler(nil)
	for _, name := range []string{"lockdep", "lockdep_chains", "lockdep_stats", "lock_stat", "locks"} {
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/debug/lockdep/"+name, nil))
		require.Equal(t, http.StatusNotFound, rr.Code, name)
	}
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/debug/lockdep/graph.dot", nil))
	require.Equal(t, http.StatusOK, rr.Code)

	var a lockclass.Mutex
	a.Lock()
	var out strings.Builder
	require.NoError(t, krules.ShowAllLocks(&out))
	a.Unlock()
	require.Empty(t, out.String())

	defer lockclass.SetLockStat(lockclass.SetLockStat(true))
	require.False(t, lockclass.LockStatEnabled())
}
