package main

import (
	"fmt"
	"io"
	"os"
)

// progress is the run's progress line on standard error: rewritten in
// place on a terminal, one line a step otherwise, so that a log of the
// run (stderr redirected to a file or a CI log) reads line by line instead
// of as one long line of carriage returns.
type progress struct {
	w   io.Writer
	tty bool
}

func newProgress() progress {
	fi, err := os.Stderr.Stat()
	return progress{w: os.Stderr, tty: err == nil && fi.Mode()&os.ModeCharDevice != 0}
}

// step shows what the run is doing now.
func (p progress) step(format string, args ...any) {
	if p.tty {
		fmt.Fprintf(p.w, "\r%-80s", fmt.Sprintf(format, args...))
		return
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

// done clears a terminal's line; a log keeps its lines.
func (p progress) done() {
	if p.tty {
		fmt.Fprintf(p.w, "\r%-80s\r", "")
	}
}
