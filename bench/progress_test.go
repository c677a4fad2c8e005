package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestProgressIsOneLineAStepInALog(t *testing.T) {
	var log strings.Builder
	p := progress{w: &log}
	p.step("[%d/%d] measuring %s", 1, 2, "a")
	p.step("[%d/%d] measuring %s", 2, 2, "b")
	p.done()
	require.Equal(t, "[1/2] measuring a\n[2/2] measuring b\n", log.String())

	var term strings.Builder
	p = progress{w: &term, tty: true}
	p.step("[%d/%d] measuring %s", 1, 1, "a")
	p.done()
	require.True(t, strings.HasPrefix(term.String(), "\r[1/1] measuring a "), "%q", term.String())
	require.True(t, strings.HasSuffix(term.String(), "\r"), "the line is cleared")
	require.NotContains(t, term.String(), "\n")
}
