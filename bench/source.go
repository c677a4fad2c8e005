package main

import (
	"context"
	"math/rand/v2"
)

// A source delivers invalidations to a device's mirrors: the seam between
// the strategy report and the MMU-notifier code that drives it.
type source interface {
	// setup creates spaces address spaces, each mirrored by dev through
	// a registered notifier, for workers goroutines to share.
	setup(dev *device, spaces, workers int, rng *rand.Rand) error
	// blockable makes one change that invalidates a range (blockable), an
	// unmap or a protection change, to the address space of worker
	// (worker modulo spaces). Workers never call it concurrently with
	// themselves.
	blockable(worker int, rng *rand.Rand) error
	// reap creates a victim address space mirrored by dev and OOM-reaps
	// it, which invalidates each of its mappings (non-blockable). It
	// returns how many times the reaper had to retry; ctx cuts the
	// reaper's retries short.
	reap(ctx context.Context, dev *device, rng *rand.Rand) (retries int, err error)
	// close tears every address space down and releases the mirrors.
	close() error
}

// Range sizes, in pages: an invalidation covers from a quarter of a
// translation chunk to two chunks, so the buffer is one to four pages and
// the biggest ranges take two passes.
const (
	minRangePages = 256
	maxRangePages = 2 * chunkBytes / mttEntrySize
)

func rangePages(rng *rand.Rand) int {
	return minRangePages + rng.IntN(maxRangePages-minRangePages+1)
}
