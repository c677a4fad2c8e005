package lockclass_test

import (
	"sync"
	"testing"

	"github.com/krules/krules/lockclass"
)

func BenchmarkMutexPair(b *testing.B) {
	var m lockclass.Mutex
	m.Init(lockclass.WithName("bench"))
	m.Lock()
	m.Unlock()
	for b.Loop() {
		m.Lock()
		m.Unlock()
	}
}

func BenchmarkSyncMutexPair(b *testing.B) {
	var m sync.Mutex
	for b.Loop() {
		m.Lock()
		m.Unlock()
	}
}

func BenchmarkMutexPairOff(b *testing.B) {
	defer lockclass.SetEnabled(lockclass.SetEnabled(false))
	var m lockclass.Mutex
	for b.Loop() {
		m.Lock()
		m.Unlock()
	}
}

func BenchmarkRWSemRPair(b *testing.B) {
	var s lockclass.RWSem
	s.Init(lockclass.WithName("bench_rwsem"))
	s.RLock()
	s.RUnlock()
	for b.Loop() {
		s.RLock()
		s.RUnlock()
	}
}

func BenchmarkSyncRWMutexRPair(b *testing.B) {
	var s sync.RWMutex
	for b.Loop() {
		s.RLock()
		s.RUnlock()
	}
}
