//go:build krules_nolockdep

package main

// compiledOutFigures: with -tags krules_nolockdep a Mutex is a plain lock;
// the target is parity with sync.Mutex, within measurement noise.
var compiledOutFigures = []figure{
	{
		Name: "Mutex compiled out", Baseline: "sync.Mutex", Target: 1.1, MaxAllocs: 0,
		base: benchSyncPair, rules: benchMutexPair,
	},
}

// lockdepCompiledIn says whether this build validates locks: not with
// -tags krules_nolockdep, so nothing here expects a lockdep report.
const lockdepCompiledIn = false
