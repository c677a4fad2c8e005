package krules_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Each kernel name has one row in the README's kernel-to-Go table: a second
// row for the same names is a stale copy that contradicts the first (the
// OOM reaper's "unable to reap" line, a krules.Logf line since the report
// was dropped, came back as an OOMReaperFailure report).
func TestReadmeKernelTableHasOneRowPerKernelName(t *testing.T) {
	b, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, table, ok := strings.Cut(string(b), "\n## Kernel → Go\n")
	require.True(t, ok, "README has no kernel-to-Go table")
	table, _, _ = strings.Cut(table, "\n## ")
	rows := map[string]string{}
	for line := range strings.Lines(table) {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, " | ")
		require.GreaterOrEqual(t, len(cells), 3, line)
		kernel := strings.TrimPrefix(cells[0], "| ")
		prev, dup := rows[kernel]
		require.False(t, dup, "two rows for %s:\n%s%s", kernel, prev, line)
		rows[kernel] = line
	}
	require.NotEmpty(t, rows)
}
