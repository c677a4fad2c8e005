package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTraceCheckDemonstrationFindsTheBlock(t *testing.T) {
	var out bytes.Buffer
	demonstrateTraceCheck(&out)
	require.Regexp(t, `\n    BUG: scheduling in a non-blocking section: oom_reaper/\d+/1\n    blocked on: sleep\n    Non-block section entered at:\n    (main|bench)\.demonstrateTraceCheck\.func1\.1\+0x[0-9a-f]+ bench/figures_nonblock\.go:\d+\n`, out.String())
}
