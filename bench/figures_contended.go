package main

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/krules/krules/lockclass"
)

// contendedFigures are the locks under load: G goroutines on one lock, each
// taking it b.N/G times around a short critical section, so a figure is the
// time per acquisition of the whole group (the inverse of throughput). The
// target 1.43 is 0.7× sync's throughput: the hand-off design must not
// collapse under contention. Then lock_stat's price on the uncontended
// pair, against the same pair with it off.
var contendedFigures = []figure{
	contendedMutex(2), contendedMutex(4), contendedMutex(8),
	{
		Name: "8 readers + 1 writer RWSem", Baseline: "sync.RWMutex", Target: 1.43, MaxAllocs: -1,
		base: func(b *testing.B) {
			var m sync.RWMutex
			contendRW(b, m.Lock, m.Unlock, m.RLock, m.RUnlock)
		},
		rules: func(b *testing.B) {
			s := new(lockclass.RWSem)
			s.Init(lockclass.WithName("bench_contended_rwsem"))
			contendRW(b, s.Lock, s.Unlock, s.RLock, s.RUnlock)
		},
	},
	{
		Name: "Mutex Lock+Unlock, lock_stat on", Baseline: "lock_stat off", Target: 1.5, MaxAllocs: 0,
		base: benchMutexPair,
		rules: func(b *testing.B) {
			prev := lockclass.SetLockStat(true)
			defer lockclass.SetLockStat(prev)
			benchMutexPair(b)
		},
	},
}

func contendedMutex(g int) figure {
	return figure{
		Name: strconv.Itoa(g) + " goroutines on one Mutex", Baseline: "sync.Mutex", Target: 1.43, MaxAllocs: -1,
		base: func(b *testing.B) {
			var m sync.Mutex
			contend(b, g, m.Lock, m.Unlock)
		},
		rules: func(b *testing.B) {
			m := new(lockclass.Mutex)
			m.Init(lockclass.WithName("bench_contended_mutex"))
			contend(b, g, m.Lock, m.Unlock)
		},
	}
}

// shared is the critical section's data, written under the lock.
type shared struct{ n [8]uint64 }

func (s *shared) touch() {
	for i := range s.n {
		s.n[i]++
	}
}

func contend(b *testing.B, g int, lock, unlock func()) {
	var s shared
	var wg sync.WaitGroup
	var worst longestWait
	b.ResetTimer()
	for i := range g {
		n := b.N / g
		if i < b.N%g {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine time.Duration
			for k := range n {
				if k%waitSample != 0 {
					lock()
					s.touch()
					unlock()
					continue
				}
				t0 := time.Now()
				lock()
				mine = max(mine, time.Since(t0))
				s.touch()
				unlock()
			}
			worst.see(mine)
		}()
	}
	wg.Wait()
	worst.report(b)
}

// waitSample is how often contend times a wait: one acquisition in 16, so
// the clock costs both sides little.
const waitSample = 16

// maxWaitMetric is the unit under which a contended figure reports its
// longest sampled wait (go test -bench prints it; the report's table, JSON
// and fairness chart show it beside the throughput).
const maxWaitMetric = "max-wait-ns"

// longestWait is the longest wait any goroutine of a figure saw.
type longestWait struct{ ns atomic.Int64 }

func (l *longestWait) see(d time.Duration) {
	for w := l.ns.Load(); int64(d) > w && !l.ns.CompareAndSwap(w, int64(d)); w = l.ns.Load() {
	}
}

// report records it as the benchmark's metric: fairness, which throughput
// alone hides (an unfair lock is fast because one goroutine keeps it).
func (l *longestWait) report(b *testing.B) {
	b.ReportMetric(float64(l.ns.Load()), maxWaitMetric)
}

// contendRW runs 8 readers and 1 writer; the writer takes one acquisition
// in 9. Each samples its waits as contend does, the writer's included, so
// a writer starved by readers shows.
func contendRW(b *testing.B, lock, unlock, rlock, runlock func()) {
	var s shared
	var wg sync.WaitGroup
	var worst longestWait
	b.ResetTimer()
	const readers = 8
	per := b.N/(readers+1) + 1
	for i := range readers + 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine time.Duration
			for k := range per {
				var t0 time.Time
				timed := k%waitSample == 0
				if timed {
					t0 = time.Now()
				}
				if i == readers {
					lock()
					if timed {
						mine = max(mine, time.Since(t0))
					}
					s.touch()
					unlock()
				} else {
					rlock()
					if timed {
						mine = max(mine, time.Since(t0))
					}
					_ = s.n[0]
					runlock()
				}
			}
			worst.see(mine)
		}()
	}
	wg.Wait()
	worst.report(b)
}
