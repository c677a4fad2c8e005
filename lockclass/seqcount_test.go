//go:build !krules_nolockdep

package lockclass_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
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
	// It is WARN_ON_ONCE: the next write section with preemption on is
	// quiet.
	sc.WriteBegin()
	sc.WriteEnd()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
}

// lockdep_assert_preemption_disabled holds only while lockdep looks
// (__lockdep_enabled): inside Off a plain seqcount's writer with preemption
// on is not warned about, and the once is not used up.
func TestPlainSeqCountPreemptionAssertQuietInsideOff(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	var sc lockclass.SeqCount
	sc.Init(nil, lockclass.WithName("&obj->seq"))
	lockclass.Off()
	sc.WriteBegin()
	sc.WriteEnd()
	lockclass.On()
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

// A validator that keeps going reports the recursive read of a seqcount
// inside its own write section every time (a chain that fails the check is
// never cached, so no read of it takes the cached path), and every such
// read returns at once instead of spinning on its own write: whether the
// reader holds the seqcount is looked up only once it finds a write in
// progress.
func TestSeqCountReaderInsideItsWriterKeepGoing(t *testing.T) {
	bothIDWays(t, func(t *testing.T) {
		rec := krulestest.Record(t)
		v := lockclass.NewValidator(lockclass.KeepGoing())
		var l lockclass.SpinLock
		l.Init(lockclass.WithValidator(v), lockclass.WithName("&obj->lock"))
		var sc lockclass.SeqCount
		sc.Init(&l, lockclass.WithValidator(v), lockclass.WithName("&obj->seq"))
		for range 4 {
			l.Lock()
			sc.WriteBegin()
			s := sc.ReadBegin()
			require.Equal(t, uint32(1), s&1, "inside the write")
			require.False(t, sc.ReadRetry(s))
			sc.WriteEnd()
			l.Unlock()
		}
		require.Equal(t, []krules.Kind{krules.RecursiveLocking, krules.RecursiveLocking,
			krules.RecursiveLocking, krules.RecursiveLocking}, rec.Kinds())
		require.Contains(t, rec.Last().Text, "(&obj->seq){")
		require.Nil(t, task.Lookup())
	})
}

// A seqcount read under a lock orders the lock before the seqcount when
// its chain is first validated, and reads made through the cached path
// after that leave it so: a writer that takes the lock inside its write
// section closes the cycle (the reader spins on a writer that waits for
// the reader's lock).
func TestCachedSeqCountReadUnderALockStillOrders(t *testing.T) {
	bothIDWays(t, func(t *testing.T) {
		rec := krulestest.Record(t)
		v := lockclass.NewValidator()
		var a, l lockclass.SpinLock
		a.Init(lockclass.WithValidator(v), lockclass.WithName("&a->lock"))
		l.Init(lockclass.WithValidator(v), lockclass.WithName("&obj->lock"))
		var sc lockclass.SeqCount
		sc.Init(&l, lockclass.WithValidator(v), lockclass.WithName("&obj->seq"))
		for range 4 {
			a.Lock()
			s := sc.ReadBegin() // A -> seq (recursive read)
			require.False(t, sc.ReadRetry(s))
			a.Unlock()
		}
		require.Nil(t, task.Lookup())
		require.Zero(t, rec.Len())
		l.Lock()
		sc.WriteBegin()
		a.Lock() // seq (write) -> A closes A -> seq
		a.Unlock()
		sc.WriteEnd()
		l.Unlock()
		require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
		require.Contains(t, rec.Last().Text, "(&obj->seq){")
		require.Nil(t, task.Lookup())
	})
}

// write_seqlock makes the sequence odd for the whole write section
// (do_write_seqcount_begin), so read_seqretry tells a read that began
// before the write to retry while the write is still in progress, and a
// read begun after write_sequnlock needs no retry.
func TestSeqLockReadRetriesWhileTheWriteIsInProgress(t *testing.T) {
	krulestest.Check(t)
	var sl lockclass.SeqLock
	sl.Init(lockclass.WithValidator(lockclass.NewValidator()), lockclass.WithName("&tk_core.seq"))
	start := sl.ReadBegin()
	writing, finish, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		sl.WriteLock()
		close(writing)
		<-finish
		sl.WriteUnlock()
	}()
	<-writing
	retry := sl.ReadRetry(start)
	close(finish)
	<-done
	require.True(t, retry, "a write in progress")
	require.True(t, sl.ReadRetry(start))
	require.False(t, sl.ReadRetry(sl.ReadBegin()))
}

// seqcount_init starts the sequence over at 0, whatever it was.
func TestSeqCountInitStartsTheSequenceOver(t *testing.T) {
	krulestest.Check(t)
	var sc lockclass.SeqCount
	sc.Init(nil, lockclass.WithValidator(lockclass.NewValidator()))
	nonblock.StartAtomic()
	sc.WriteBegin()
	sc.WriteEnd()
	nonblock.EndAtomic()
	require.EqualValues(t, 2, sc.Sequence())
	sc.Init(nil, lockclass.WithValidator(lockclass.NewValidator()))
	require.Zero(t, sc.Sequence())
}

// read_seqcount_begin waits out a write in progress and returns the even
// sequence the write ends with.
func TestSeqCountReadBeginWaitsOutAWrite(t *testing.T) {
	krulestest.Check(t)
	var sc lockclass.SeqCount
	sc.Init(nil, lockclass.WithValidator(lockclass.NewValidator()))
	nonblock.StartAtomic()
	sc.WriteBegin()
	got := make(chan uint32, 1)
	go func() { got <- sc.ReadBegin() }()
	select {
	case seq := <-got:
		t.Fatalf("ReadBegin returned %d during the write", seq)
	case <-time.After(20 * time.Millisecond):
	}
	sc.WriteEnd()
	nonblock.EndAtomic()
	require.EqualValues(t, 2, <-got)
}

// A seqcount whose writers hold a sleeping lock (an RWSem as a Mutex)
// enters its own atomic section for the write (seqprop_preemptible), and
// leaves only that one: re-initialised as a plain seqcount_t, its write in
// the caller's section leaves the caller's section open.
func TestSeqCountWriteSectionOfASleepingLock(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(v), lockclass.WithName("&obj->sem"))
	var sc lockclass.SeqCount
	sc.Init(&s, lockclass.WithValidator(v), lockclass.WithName("&obj->seq"))
	s.Lock()
	sc.WriteBegin()
	require.True(t, nonblock.InAtomic())
	sc.WriteEnd()
	require.False(t, nonblock.InAtomic())
	s.Unlock()

	sc.Init(nil, lockclass.WithValidator(v), lockclass.WithName("&obj->seq"))
	nonblock.StartAtomic()
	sc.WriteBegin()
	sc.WriteEnd()
	require.True(t, nonblock.InAtomic(), "the caller's section")
	nonblock.EndAtomic()
	require.Nil(t, task.Lookup())
}

// seqlock_init starts the sequence over at 0 too.
func TestSeqLockInitStartsTheSequenceOver(t *testing.T) {
	krulestest.Check(t)
	var sl lockclass.SeqLock
	sl.Init(lockclass.WithValidator(lockclass.NewValidator()))
	sl.WriteLock()
	sl.WriteUnlock()
	require.EqualValues(t, 2, sl.ReadBegin())
	sl.Init(lockclass.WithValidator(lockclass.NewValidator()))
	require.Zero(t, sl.ReadBegin())
}

// read_seqlock_excl takes the seqlock's own lock as write_seqlock does:
// one lock of one class, which lockdep_assert_held finds under either.
func TestSeqLockExclusiveReaderTakesItsLock(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	var sl lockclass.SeqLock
	sl.Init(lockclass.WithValidator(v))
	sl.WriteLock()
	lockclass.AssertHeld(&sl)
	sl.WriteUnlock()
	sl.ReadLockExcl()
	lockclass.AssertHeld(&sl)
	sl.ReadUnlockExcl()
	lockclass.AssertNotHeld(&sl)
	require.Equal(t, 1, v.Stats().Classes)
}
