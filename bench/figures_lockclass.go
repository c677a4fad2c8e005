package main

import (
	"sync"
	"testing"

	deadlock "github.com/sasha-s/go-deadlock"

	"github.com/krules/krules/lockclass"
)

// lockclassFigures are the validated locks beside plain Go locks and beside
// go-deadlock, uncontended, with every chain already cached. Each loop calls
// the locks directly (no method values), as ordinary code does.
var lockclassFigures = []figure{
	{
		Name: "Mutex Lock+Unlock", Baseline: "sync.Mutex", Target: 3, MaxAllocs: 0,
		base: benchSyncPair, rules: benchMutexPair,
	},
	{
		Name: "3 nested Mutex", Baseline: "3 sync.Mutex", Target: 3, MaxAllocs: 0,
		base: benchSyncNested, rules: benchMutexNested,
	},
	{
		Name: "RWSem RLock+RUnlock", Baseline: "sync.RWMutex", Target: 4, MaxAllocs: 0,
		base: func(b *testing.B) {
			var m sync.RWMutex
			b.ReportAllocs()
			for b.Loop() {
				m.RLock()
				m.RUnlock()
			}
		},
		rules: func(b *testing.B) {
			s := new(lockclass.RWSem)
			s.Init(lockclass.WithName("bench_rwsem"))
			s.RLock()
			s.RUnlock()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				s.RLock()
				s.RUnlock()
			}
		},
	},
	{
		Name: "Mutex, validation off", Baseline: "sync.Mutex", Target: 1.3, MaxAllocs: 0,
		base: benchSyncPair,
		rules: func(b *testing.B) {
			prev := lockclass.SetEnabled(false)
			defer lockclass.SetEnabled(prev)
			benchMutexPair(b)
		},
	},
	{
		// go-deadlock pays ~20× sync.Mutex; the target is 10× faster.
		Name: "Mutex vs go-deadlock", Baseline: "go-deadlock", Target: 0.1, MaxAllocs: 0,
		base: func(b *testing.B) {
			var m deadlock.Mutex
			b.ReportAllocs()
			for b.Loop() {
				m.Lock()
				m.Unlock()
			}
		},
		rules: benchMutexPair,
	},
	{
		Name: "3 nested vs go-deadlock", Baseline: "go-deadlock", Target: 0.05, MaxAllocs: 0,
		base: func(b *testing.B) {
			var m0, m1, m2 deadlock.Mutex
			b.ReportAllocs()
			for b.Loop() {
				m0.Lock()
				m1.Lock()
				m2.Lock()
				m2.Unlock()
				m1.Unlock()
				m0.Unlock()
			}
		},
		rules: benchMutexNested,
	},
	// One lock per goroutine: no global lock on the cached path keeps this
	// ratio at the serial one ("scales no worse than sync.Mutex"); read it
	// against the Mutex Lock+Unlock row.
	{
		Name: "Mutex RunParallel", Baseline: "sync.Mutex", MaxAllocs: 0,
		base: func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var m sync.Mutex
				for pb.Next() {
					m.Lock()
					m.Unlock()
				}
			})
		},
		rules: func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				m := newMutex()
				m.Lock()
				m.Unlock()
				for pb.Next() {
					m.Lock()
					m.Unlock()
				}
			})
		},
	},
}

// newMutex gives every benchmark mutex the same class, as an init site
// would.
func newMutex() *lockclass.Mutex {
	m := new(lockclass.Mutex)
	m.Init(lockclass.WithName("bench_mutex"))
	return m
}

func benchSyncPair(b *testing.B) {
	var m sync.Mutex
	b.ReportAllocs()
	for b.Loop() {
		m.Lock()
		m.Unlock()
	}
}

// benchMutexPair measures Lock+Unlock after one warm-up pair, so the chain
// is cached.
func benchMutexPair(b *testing.B) {
	m := newMutex()
	m.Lock()
	m.Unlock()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m.Lock()
		m.Unlock()
	}
}

func benchSyncNested(b *testing.B) {
	var m0, m1, m2 sync.Mutex
	b.ReportAllocs()
	for b.Loop() {
		m0.Lock()
		m1.Lock()
		m2.Lock()
		m2.Unlock()
		m1.Unlock()
		m0.Unlock()
	}
}

var nestKeys [3]lockclass.Key

// benchMutexNested takes three mutexes of three classes in order and
// releases them in reverse, after a warm-up round caches the chains.
func benchMutexNested(b *testing.B) {
	var m [3]lockclass.Mutex
	for i, name := range []string{"bench_outer", "bench_middle", "bench_inner"} {
		m[i].Init(lockclass.WithKey(&nestKeys[i]), lockclass.WithName(name))
	}
	for i := range m { // the warm-up that caches the chains
		m[i].Lock()
	}
	for i := range m {
		m[len(m)-1-i].Unlock()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() { // spelled out, as in the baseline: no closure call per round
		m[0].Lock()
		m[1].Lock()
		m[2].Lock()
		m[2].Unlock()
		m[1].Unlock()
		m[0].Unlock()
	}
}
