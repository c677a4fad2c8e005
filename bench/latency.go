package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// A histogram records durations from many goroutines at once without a
// lock: log-linear buckets (64 per power of two, so a quantile is within
// 1.6% of the true value) counted with atomic adds, and the exact maximum.
// Callbacks record into it on their hot path; it never allocates.
type histogram struct {
	counts [histBuckets]atomic.Uint64
	total  atomic.Uint64
	max    atomic.Int64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits // buckets per power of two
	// Values below 2*histSub ns have a bucket each; above, 64 a doubling,
	// up to 2^40 ns (18 minutes).
	histBuckets = 2*histSub + (40-histSubBits)*histSub
)

// bucketOf maps a duration in nanoseconds to its bucket.
func bucketOf(ns int64) int {
	v := uint64(max(ns, 0))
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1 // v>>shift is in [histSub, 2*histSub)
	i := 2*histSub + (shift-1)*histSub + int(v>>shift) - histSub
	return min(i, histBuckets-1)
}

// bucketValue returns the middle of bucket i, in nanoseconds.
func bucketValue(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	shift := (i-2*histSub)/histSub + 1
	lo := uint64(histSub+(i-2*histSub)%histSub) << shift
	return int64(lo + (uint64(1)<<shift)/2)
}

// record adds one duration.
func (h *histogram) record(d time.Duration) {
	ns := int64(d)
	h.counts[bucketOf(ns)].Add(1)
	h.total.Add(1)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

// count returns the number of durations recorded.
func (h *histogram) count() uint64 { return h.total.Load() }

// quantile returns the duration below which a fraction q of the recorded
// ones lie (0 if none was recorded). The maximum is exact.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(h.max.Load())
	}
	rank := uint64(q*float64(n-1)) + 1
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(min(bucketValue(i), h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}
