package main

import (
	"bufio"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestModelNameReadsCpuinfo(t *testing.T) {
	for _, tc := range []struct{ cpuinfo, want string }{
		{"processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 1\nmodel name\t: AMD EPYC  7B13 64-Core Processor\nprocessor\t: 1\nmodel name\t: other\n", "AMD EPYC 7B13 64-Core Processor"},
		{"processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nprocessor\t: 1\ncpu family\t: 23\nmodel\t\t: 49\n", "AMD EPYC (family 25, model 1)"},
		{"processor\t: 0\nmodel name\t: other\ncpu family\t: 6\n", "other"},
		{"processor\t: 0\nBogoMIPS\t: 50.00\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n", "Raspberry Pi 4 Model B Rev 1.4"},
		{"processor\t: 0\nBogoMIPS\t: 50.00\n", ""},
	} {
		require.Equal(t, tc.want, modelName(bufio.NewScanner(strings.NewReader(tc.cpuinfo))))
	}
	require.NotEmpty(t, cpuModel())
	if runtime.GOOS != "linux" {
		require.Equal(t, runtime.GOARCH, cpuModel())
	}
}
