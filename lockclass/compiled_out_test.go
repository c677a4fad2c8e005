//go:build krules_nolockdep

package lockclass_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// With validation compiled out the locks are plain locks: an inversion
// goes unreported, nothing is tracked, the views are empty.
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
	var out strings.Builder
	require.NoError(t, lockclass.Default().WriteClasses(&out))
	require.Equal(t, "all lock classes:\n", out.String())
}
