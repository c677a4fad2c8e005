//go:build !krules_nolockdep

package lockclass_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The seed corpus must exercise reports, not only quiet scripts, or the
// fuzz test's comparison could not fail.
func TestFuzzCorpusReachesReports(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzValidatorAgainstModel/*")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	reports := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		require.Equal(t, "go test fuzz v1", lines[0])
		arg := strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")
		data, err := strconv.Unquote(arg)
		require.NoError(t, err)
		if step, _ := modelRun(decodeOps([]byte(data))); step >= 0 {
			reports++
		}
	}
	require.Positive(t, reports)
	// The in-code seeds: ABBA on one goroutine, ABBA across two, and a
	// read-recursion case.
	step, _ := modelRun(decodeOps([]byte{0x00, 0x00, 0x00, 0x01, 0x0c, 0x00, 0x0c, 0x00, 0x00, 0x01, 0x00, 0x00}))
	require.Equal(t, 5, step)
}
