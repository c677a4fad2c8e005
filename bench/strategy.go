package main

import (
	"fmt"
	"strings"
)

// A strategy is one way for the driver's callbacks to get their translation
// buffer. Each lives in its own file (strategy_<key>.go) and is listed once,
// in strategies; the report, the charts, results.json, the flags and the
// tests all read that list.
type strategy struct {
	id     int    // its place in strategies, from 1 (numbered sets it)
	key    string // for -strategies, benchmark names and results.json
	label  string // for the table, after the number
	lesson string // what the strategy teaches, for the report's notes
	// bug marks the strategy the report exists to catch: its runs must
	// raise lockdep and sleep-in-atomic reports, and its non-blockable
	// numbers are not shown (every call is the bug). Every other strategy
	// must raise none.
	bug bool
	// nowait says its callbacks allocate without direct reclaim, which
	// fail_page_alloc's defaults (ignore-gfp-wait) reach.
	nowait bool
	// fallback, if set, is what the table's fallback column shows.
	fallback func(modeResult) int64
	// probe sets the strategy up on a new device: everything it needs
	// before any callback can run, allocated with GFP_KERNEL and no lock
	// held.
	probe func(d *device, reserve int) (buffers, error)
}

// buffers is a strategy's state on one device.
type buffers interface {
	// attach runs when a mirror is set up, before its notifier is
	// registered and before any lock is taken; an error refuses the
	// registration (-ENOMEM).
	attach(m *mirror) error
	// detach runs when the mirror is released, once no callback can run.
	detach(m *mirror)
	// zap builds the translation buffer for npages pages from page number
	// first and posts it (m.post), getting the buffer the strategy's way.
	zap(m *mirror, st *modeStats, first uint64, npages int, md mode) error
	// reserveBytes is the memory kept allocated for callbacks that may
	// never come.
	reserveBytes(d *device) int64
	close() error
}

// strategies lists every strategy, in the report's order.
var strategies = numbered(
	kernelStrategy,
	atomicStrategy,
	mempoolStrategy,
	preallocStrategy,
	stackStrategy,
	fenceStrategy,
)

func numbered(ss ...strategy) []strategy {
	for i := range ss {
		ss[i].id = i + 1
	}
	return ss
}

// name is the strategy as the table shows it: "1 GFP_KERNEL".
func (s strategy) name() string { return fmt.Sprintf("%d %s", s.id, s.label) }

// strategyByKey returns the strategy of a result.
func strategyByKey(key string) (strategy, bool) {
	for _, s := range strategies {
		if s.key == key {
			return s, true
		}
	}
	return strategy{}, false
}

// strategyKeys lists the keys, for -strategies' help.
func strategyKeys() string {
	keys := make([]string, len(strategies))
	for i, s := range strategies {
		keys[i] = s.key
	}
	return strings.Join(keys, ",")
}

// submitter is implemented by buffers whose device also runs work the
// application submits (the GPU jobs of strategy 6): the source calls
// submit after each blockable change, on the worker's goroutine and
// holding nothing, as the application's next step.
type submitter interface {
	submit(m *mirror)
}

// noBuffers is a strategy that keeps nothing per device or per mirror.
type noBuffers struct{}

func (noBuffers) attach(*mirror) error       { return nil }
func (noBuffers) detach(*mirror)             {}
func (noBuffers) reserveBytes(*device) int64 { return 0 }
func (noBuffers) close() error               { return nil }
