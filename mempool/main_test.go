package mempool_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
)

func TestMain(m *testing.M) { krulestest.VerifyTestMain(m, krulestest.MempoolDebug()) }

var errFail = errors.New("allocator failed")

// source is an allocator of *int elements whose failures the test
// controls, recording the flags of every call.
type source struct {
	mu     sync.Mutex
	flags  []gfp.Flags
	fail   atomic.Bool
	live   atomic.Int64 // elements allocated and not freed
	serial atomic.Int64
}

func (s *source) alloc(f gfp.Flags) (*int, error) {
	s.mu.Lock()
	s.flags = append(s.flags, f)
	s.mu.Unlock()
	if s.fail.Load() {
		return nil, errFail
	}
	s.live.Add(1)
	v := int(s.serial.Add(1))
	return &v, nil
}

func (s *source) free(*int) { s.live.Add(-1) }

func (s *source) calls() []gfp.Flags {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]gfp.Flags(nil), s.flags...)
}

func (s *source) reset() {
	s.mu.Lock()
	s.flags = nil
	s.mu.Unlock()
}
