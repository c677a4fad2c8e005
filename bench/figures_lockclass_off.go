//go:build krules_nolockdep

package main

import "sync"

// compiledOutFigures: with -tags krules_nolockdep a Mutex is a plain lock;
// the target is parity with sync.Mutex (within measurement noise).
var compiledOutFigures = []figure{
	{
		Name: "Mutex compiled out", Baseline: "sync.Mutex", Target: 1.1, MaxAllocs: 0,
		base:  pairBench(func() (func(), func()) { var m sync.Mutex; return m.Lock, m.Unlock }),
		rules: pairBench(func() (func(), func()) { m := newMutex(); return m.Lock, m.Unlock }),
	},
}
