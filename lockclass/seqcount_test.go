//go:build !krules_nolockdep

package lockclass_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// Readers see either the old pair or the new one, never a mix.
func TestSeqCountReadersRetry(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	var mu lockclass.Mutex
	mu.Init(lockclass.WithName("&obj->lock"))
	var sc lockclass.SeqCount
	sc.Init(&mu, lockclass.WithName("&obj->seq"))
	var a, b atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := int64(1); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			sc.WriteBegin()
			require.True(t, nonblock.InAtomic(), "a seqcount_mutex_t write section has preemption off")
			a.Store(i)
			b.Store(i)
			sc.WriteEnd()
			require.False(t, nonblock.InAtomic())
			mu.Unlock()
		}
	}()
	for range 2000 {
		for {
			s := sc.ReadBegin()
			x, y := a.Load(), b.Load()
			if !sc.ReadRetry(s) {
				require.Equal(t, x, y)
				break
			}
		}
	}
	close(stop)
	wg.Wait()
}

func TestSeqCountWriteWithoutItsLock(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var l lockclass.SpinLock
	l.Init(lockclass.WithName("&obj->lock"))
	var sc lockclass.SeqCount
	sc.Init(&l, lockclass.WithName("&obj->seq"))
	sc.WriteBegin()
	sc.WriteEnd()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "lockdep_assert_held(&obj->lock): lock not held")
	// The write went ahead: the sequence moved by two.
	require.Equal(t, uint32(2), sc.Sequence())
}

func TestPlainSeqCountNeedsPreemptionOff(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var sc lockclass.SeqCount
	sc.Init(nil, lockclass.WithName("&obj->seq"))
	nonblock.StartAtomic()
	sc.WriteBegin()
	sc.WriteEnd()
	nonblock.EndAtomic()
	require.Empty(t, rec.Kinds())
	sc.WriteBegin()
	sc.WriteEnd()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "lockdep_assert_preemption_disabled()")
}

// A reader inside the same seqcount's write section would spin forever:
// lockdep reports it (seqcount_acquire_read after seqcount_acquire).
func TestSeqCountReaderInsideWriter(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var l lockclass.SpinLock
	l.Init(lockclass.WithName("&obj->lock"))
	var sc lockclass.SeqCount
	sc.Init(&l, lockclass.WithName("&obj->seq"))
	l.Lock()
	sc.WriteBegin()
	s := sc.ReadBegin()
	require.False(t, sc.ReadRetry(s))
	sc.WriteEnd()
	l.Unlock()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.Equal(t, "WARNING: possible recursive locking detected", rec.Last().Headline)
	require.Contains(t, rec.Last().Text, "(&obj->seq){")
}

func TestSeqLock(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var sl lockclass.SeqLock
	sl.Init(lockclass.WithName("&tk_core.seq"))
	s := sl.ReadBegin()
	require.False(t, sl.ReadRetry(s))
	sl.WriteLock()
	require.True(t, nonblock.InAtomic())
	sl.WriteUnlock()
	require.True(t, sl.ReadRetry(s))
	sl.ReadLockExcl()
	sl.ReadUnlockExcl()
	require.Empty(t, rec.Kinds())

	sl.WriteLock()
	_ = sl.ReadBegin()
	sl.WriteUnlock()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "(&tk_core.seq){")
}
