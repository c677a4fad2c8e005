//go:build !krules_nolockdep

package mmnotifier_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
)

// requireOneCircular asserts that a driver port's run raised exactly one
// report, lockdep's circular dependency, whose text names every class in
// names, and logs it for the reader of -v.
func requireOneCircular(t *testing.T, rec *krulestest.Recorder, names ...string) {
	t.Helper()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	r := rec.Last()
	require.Equal(t, "WARNING: possible circular locking dependency detected", r.Headline)
	for _, name := range names {
		require.Contains(t, r.Text, name)
	}
	t.Log(r.Text)
}
