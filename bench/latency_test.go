package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHistogramQuantilesWithinABucket(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h histogram
	var ref []time.Duration
	for range 100_000 {
		// Log-uniform from 1 ns to about 1 s, like latencies with a tail.
		d := time.Duration(math.Exp2(rng.Float64() * 30))
		h.record(d)
		ref = append(ref, d)
	}
	slices.Sort(ref)
	require.EqualValues(t, len(ref), h.count())
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		want := ref[int(q*float64(len(ref)-1))]
		got := h.quantile(q)
		require.InEpsilon(t, float64(want), float64(got), 1.0/histSub+0.001, "q=%v", q)
	}
	require.Equal(t, ref[len(ref)-1], h.quantile(1))
}

func TestHistogramBucketsAreContiguous(t *testing.T) {
	prev := -1
	for ns := int64(0); ns < 1<<22; ns += 1 + ns/512 {
		i := bucketOf(ns)
		require.GreaterOrEqual(t, i, prev, "ns=%d", ns)
		require.LessOrEqual(t, i, prev+1, "ns=%d", ns)
		prev = i
		v := bucketValue(i)
		require.InEpsilon(t, float64(max(ns, 1)), float64(max(v, 1)), 1.0/histSub+0.001, "ns=%d bucket %d value %d", ns, i, v)
	}
	require.Equal(t, histBuckets-1, bucketOf(1<<62))
	var empty histogram
	require.Zero(t, empty.quantile(0.5))
}
