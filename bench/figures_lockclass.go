package main

import (
	"sync"
	"testing"

	deadlock "github.com/sasha-s/go-deadlock"

	"github.com/krules/krules/lockclass"
)

// lockclassFigures are the validated locks beside plain Go locks and beside
// go-deadlock, uncontended, with every chain already cached.
var lockclassFigures = append([]figure{
	{
		Name: "Mutex Lock+Unlock", Baseline: "sync.Mutex", Target: 3, MaxAllocs: 0,
		base:  pairBench(func() (func(), func()) { var m sync.Mutex; return m.Lock, m.Unlock }),
		rules: pairBench(func() (func(), func()) { m := newMutex(); return m.Lock, m.Unlock }),
	},
	{
		Name: "3 nested Mutex", Baseline: "3 sync.Mutex", Target: 3, MaxAllocs: 0,
		base:  nestedBench(func() sync.Locker { return new(sync.Mutex) }),
		rules: nestedBench(func() sync.Locker { return newMutex() }),
	},
	{
		Name: "RWSem RLock+RUnlock", Baseline: "sync.RWMutex", Target: 4, MaxAllocs: 0,
		base: pairBench(func() (func(), func()) { var m sync.RWMutex; return m.RLock, m.RUnlock }),
		rules: pairBench(func() (func(), func()) {
			s := new(lockclass.RWSem)
			s.Init(lockclass.WithName("bench_rwsem"))
			return s.RLock, s.RUnlock
		}),
	},
	{
		Name: "Mutex, validation off", Baseline: "sync.Mutex", Target: 1.3, MaxAllocs: 0,
		base: pairBench(func() (func(), func()) { var m sync.Mutex; return m.Lock, m.Unlock }),
		rules: func(b *testing.B) {
			prev := lockclass.SetEnabled(false)
			defer lockclass.SetEnabled(prev)
			pairBench(func() (func(), func()) { m := newMutex(); return m.Lock, m.Unlock })(b)
		},
	},
	{
		Name: "Mutex vs go-deadlock", Baseline: "go-deadlock", Target: 0.1, MaxAllocs: 0,
		base:  pairBench(func() (func(), func()) { var m deadlock.Mutex; return m.Lock, m.Unlock }),
		rules: pairBench(func() (func(), func()) { m := newMutex(); return m.Lock, m.Unlock }),
	},
	{
		Name: "3 nested vs go-deadlock", Baseline: "go-deadlock", Target: 0.05, MaxAllocs: 0,
		base:  nestedBench(func() sync.Locker { return new(deadlock.Mutex) }),
		rules: nestedBench(func() sync.Locker { return newMutex() }),
	},
	// One lock per goroutine: no global lock on the cached path means the
	// ratio stays what it is for one goroutine ("scales no worse than
	// sync.Mutex"); compare it with the Mutex Lock+Unlock row.
	{
		Name: "Mutex RunParallel", Baseline: "sync.Mutex", MaxAllocs: 0,
		base:  parallelBench(func() sync.Locker { return new(sync.Mutex) }),
		rules: parallelBench(func() sync.Locker { return newMutex() }),
	},
}, compiledOutFigures...)

// newMutex gives every benchmark mutex the same class, as an init site
// would.
func newMutex() *lockclass.Mutex {
	m := new(lockclass.Mutex)
	m.Init(lockclass.WithName("bench_mutex"))
	return m
}

// pairBench measures Lock+Unlock of one lock, after one warm-up pair so
// the chain is cached.
func pairBench(mk func() (lock, unlock func())) func(b *testing.B) {
	return func(b *testing.B) {
		lock, unlock := mk()
		lock()
		unlock()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			lock()
			unlock()
		}
	}
}

// nestedBench measures three nested locks of three classes taken in order
// and released in reverse.
func nestedBench(mk func() sync.Locker) func(b *testing.B) {
	return func(b *testing.B) {
		var l [3]sync.Locker
		for i := range l {
			l[i] = mk()
			if m, ok := l[i].(*lockclass.Mutex); ok {
				m.Init(lockclass.WithKey(&nestKeys[i]), lockclass.WithName(nestNames[i]))
			}
		}
		run := func() {
			l[0].Lock()
			l[1].Lock()
			l[2].Lock()
			l[2].Unlock()
			l[1].Unlock()
			l[0].Unlock()
		}
		run()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			run()
		}
	}
}

var (
	nestKeys  [3]lockclass.Key
	nestNames = [3]string{"bench_outer", "bench_middle", "bench_inner"}
)

// parallelBench gives each goroutine its own lock; the ratio shows whether
// validation adds shared state to the cached path.
func parallelBench(mk func() sync.Locker) func(b *testing.B) {
	return func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			l := mk()
			l.Lock()
			l.Unlock()
			for pb.Next() {
				l.Lock()
				l.Unlock()
			}
		})
	}
}
