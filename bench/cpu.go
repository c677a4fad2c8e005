package main

import (
	"bufio"
	"os"
	"runtime"
	"strings"
)

// cpuModel names the processor the run measured, as /proc/cpuinfo's
// "model name" does (the first CPU's), or GOARCH where there is none: the
// price table's ratios depend on the microarchitecture, so a reader
// comparing runs needs it.
func cpuModel() string {
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		if m := modelName(bufio.NewScanner(f)); m != "" {
			return m
		}
	}
	return runtime.GOARCH
}

// modelName returns the first "model name" line's value (x86), or else
// the first "Model" or "cpu model" one (arm64, mips), from cpuinfo lines.
func modelName(sc *bufio.Scanner) string {
	other := ""
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key, value = strings.TrimSpace(key), strings.Join(strings.Fields(value), " ")
		switch {
		case key == "model name" && value != "":
			return value
		case (key == "Model" || key == "cpu model") && other == "":
			other = value
		}
	}
	return other
}
