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

// modelName returns the first CPU's "model name" (x86), followed by its
// family and model numbers where cpuinfo gives them, or else the first
// "Model" or "cpu model" value (arm64, mips). The numbers are there because
// a virtual machine's name can be as bare as "AMD EPYC", which does not say
// whether the core is a Zen 2, 3 or 4, and the ratios depend on which.
func modelName(sc *bufio.Scanner) string {
	var name, family, model, other string
	cpus := 0
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key, value = strings.TrimSpace(key), strings.Join(strings.Fields(value), " ")
		switch {
		case key == "processor":
			if cpus++; cpus > 1 {
				return withFamily(name, family, model, other)
			}
		case key == "model name" && name == "":
			name = value
		case key == "cpu family" && family == "":
			family = value
		case key == "model" && model == "":
			model = value
		case (key == "Model" || key == "cpu model") && other == "":
			other = value
		}
	}
	return withFamily(name, family, model, other)
}

func withFamily(name, family, model, other string) string {
	switch {
	case name == "":
		return other
	case family != "" && model != "":
		return name + " (family " + family + ", model " + model + ")"
	}
	return name
}
