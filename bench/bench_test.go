package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
)

func TestMain(m *testing.M) { krules.VerifyTestMain(m) }

// BenchmarkFigures runs every figure and its baseline as sub-benchmarks, for
// benchstat:
//
//	go test -run '^$' -bench . -count 10 ./bench | benchstat -
func BenchmarkFigures(b *testing.B) {
	for _, f := range figures {
		b.Run(f.Name, func(b *testing.B) {
			b.Run("baseline", f.base)
			b.Run("krules", f.rules)
		})
	}
}

func TestQuickRunPrintsTheTableAndWritesTheOutputs(t *testing.T) {
	var out bytes.Buffer
	dir := t.TempDir()
	require.Zero(t, run(&out, config{quick: true, out: dir}))
	require.Contains(t, out.String(), "MightSleep outside sections")
	require.Contains(t, out.String(), "BUG: sleeping function called from invalid context at ")
	require.Contains(t, out.String(), "non_block: 1")

	var rep runReport
	data, err := os.ReadFile(filepath.Join(dir, "results.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &rep))
	require.Len(t, rep.Figures, len(figures))
	for _, f := range rep.Figures {
		require.Positive(t, f.BaselineNs, f.Name)
		require.Positive(t, f.KrulesNs, f.Name)
		require.InDelta(t, f.KrulesNs/f.BaselineNs, f.Ratio, 1e-9, f.Name)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "overhead-ratios.svg"))
	require.NoError(t, err)
	require.Contains(t, string(svg), "<svg")
	require.Contains(t, string(svg), "MightSleep outside sections")
}
