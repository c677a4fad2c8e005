package main

import (
	"bytes"
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

func TestQuickRunPrintsTheTableAndTheDemonstration(t *testing.T) {
	var out bytes.Buffer
	require.Zero(t, run(&out, true, ""))
	require.Contains(t, out.String(), "MightSleep outside sections")
	require.Contains(t, out.String(), "BUG: sleeping function called from invalid context at ")
	require.Contains(t, out.String(), "non_block: 1")
}
