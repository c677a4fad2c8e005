package mmnotifier_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
)

// mlxLike is a notifier in the style of the 2019 drivers: it takes its
// mutex, or in a non-blockable range tries it and gives up with -EAGAIN.
type mlxLike struct {
	mu       lockclass.Mutex
	trylock  bool
	refusals atomic.Int32
}

func (d *mlxLike) InvalidateRangeStart(r *mmnotifier.Range) error {
	if !r.Blockable() && d.trylock {
		if !d.mu.TryLock() {
			d.refusals.Add(1)
			return mmnotifier.ErrAgain
		}
	} else {
		d.mu.Lock() // sleeps: wrong in a non-blockable range
	}
	d.mu.Unlock()
	return nil
}

func TestReaperRetriesWhileANotifierRefuses(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	log := krulestest.CaptureLog(t)
	mm := newMM(t)
	d := &mlxLike{trylock: true}
	d.mu.Init(lockclass.WithName("&dev->notifier_lock"))
	_, err := mmnotifier.Register(mm, d)
	require.NoError(t, err)
	mapTouched(t, mm, 4)

	// A device thread holds the lock until the reaper was refused thrice.
	locked, unlocked := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(unlocked)
		d.mu.Lock()
		close(locked)
		for d.refusals.Load() < 3 {
			time.Sleep(time.Millisecond)
		}
		d.mu.Unlock()
	}()
	<-locked
	// Ten tries 10 ms apart leave the device thread 90 ms to notice.
	res := mm.OOMReap(context.Background(), mmnotifier.WithRetryDelay(10*time.Millisecond))
	<-unlocked
	require.True(t, res.Reaped)
	require.GreaterOrEqual(t, res.Tries, 4)
	require.EqualValues(t, res.Tries-1, d.refusals.Load(), "every refused try was retried")
	require.EqualValues(t, 4, res.Freed)
	require.Contains(t, log.String(), "callback failed with -11 in non-blockable context.")
	require.Contains(t, log.String(), "oom_reaper: reaped process 42 (victim), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB")

	again := mm.OOMReap(context.Background())
	require.Equal(t, mmnotifier.ReapResult{Tries: 1, Reaped: true}, again, "MMF_OOM_SKIP: nothing to do")
}

// A driver that answers ErrAgain to every non-blockable call does nothing
// wrong (nouveau does it): the reaper gives up with the kernel's pr_info
// line, which fails no test.
func TestReaperGivesUpAfterTenTries(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	log := krulestest.CaptureLog(t)
	mm := newMM(t)
	d := &mlxLike{trylock: true}
	d.mu.Init(lockclass.WithName("&dev->notifier_lock"))
	_, err := mmnotifier.Register(mm, d)
	require.NoError(t, err)
	mapTouched(t, mm, 2)

	d.mu.Lock()
	res := mm.OOMReap(context.Background(), mmnotifier.WithRetryDelay(time.Millisecond))
	d.mu.Unlock()
	require.Equal(t, mmnotifier.ReapResult{Tries: mmnotifier.MaxOOMReapRetries}, res)
	require.EqualValues(t, 10, d.refusals.Load())
	require.Equal(t, 1, strings.Count(log.String(), "oom_reaper: unable to reap pid:42 (victim)\n"))
	require.Contains(t, log.String(), "victim pid:42 (victim): mmap_lock free\n")
	require.Equal(t, 10, strings.Count(log.String(), "callback failed with -11 in non-blockable context."))
	require.EqualValues(t, 2, mm.RSS(), "nothing was reaped")
	require.True(t, mm.Reaped(), "MMF_OOM_SKIP is set anyway")

	// With MMF_OOM_SKIP set, a later reap leaves the address space alone
	// (oom_reap_task_mm tests it under mmap_lock) and asks no notifier.
	res = mm.OOMReap(context.Background(), mmnotifier.WithRetryDelay(time.Millisecond))
	require.Equal(t, mmnotifier.ReapResult{Reaped: true, Tries: 1}, res)
	require.EqualValues(t, 2, mm.RSS())
	require.EqualValues(t, 10, d.refusals.Load())
	require.NotContains(t, log.String(), "oom_reaper: reaped process")
}

func TestReaperRetriesWhileMmapLockIsHeld(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	mapTouched(t, mm, 1)
	locked, unlocked := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(unlocked)
		mm.MmapLock().Lock()
		close(locked)
		time.Sleep(20 * time.Millisecond)
		mm.MmapLock().Unlock()
	}()
	<-locked
	// Ten tries 25 ms apart span 225 ms: room for the 20 ms hold even on a
	// loaded machine.
	res := mm.OOMReap(context.Background(), mmnotifier.WithRetryDelay(25*time.Millisecond))
	<-unlocked
	require.True(t, res.Reaped)
	require.Greater(t, res.Tries, 1, "the trylock failed at first")
}

func TestReaperStopsWithItsContext(t *testing.T) {
	krulestest.Check(t)
	log := krulestest.CaptureLog(t)
	mm := newMM(t)
	mapTouched(t, mm, 1)
	mm.MmapLock().Lock()
	defer mm.MmapLock().Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := mm.OOMReap(ctx)
	require.Equal(t, mmnotifier.ReapResult{Tries: 1}, res, "one try, then the sleep is cut short; no report")
	require.NotContains(t, log.String(), "unable to reap", "it did not try ten times")
}

func TestReapedAddressSpaceFaultsFail(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	addr := mapTouched(t, mm, 1)
	require.True(t, mm.OOMReap(context.Background()).Reaped)
	_, err := mm.Fault(addr, false)
	require.ErrorIs(t, err, mmnotifier.ErrFault, "SIGBUS on an unstable mm")
}

func TestDefaultReaperTimingIsTheKernels(t *testing.T) {
	require.Equal(t, 10, mmnotifier.MaxOOMReapRetries)
	require.Equal(t, 100*time.Millisecond, mmnotifier.OOMReapRetryDelay)
}

// Between tries the reaper sleeps HZ/10 unless told otherwise: a victim
// whose notifier keeps refusing is tried at most twice in 150 ms.
func TestReaperSleepsATenthOfASecondBetweenTries(t *testing.T) {
	krulestest.Check(t)
	krulestest.CaptureLog(t)
	mm := newMM(t)
	d := &mlxLike{trylock: true}
	d.mu.Init(lockclass.WithName("&dev->notifier_lock"))
	_, err := mmnotifier.Register(mm, d)
	require.NoError(t, err)
	mapTouched(t, mm, 1)
	d.mu.Lock()
	defer d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	res := mm.OOMReap(ctx)
	require.False(t, res.Reaped)
	require.LessOrEqual(t, res.Tries, 2)
}

// oom_reap_task says "unable to reap" only when every one of its ten tries
// failed: a victim reaped on the tenth try is reaped, and a reaper stopped
// by its context before the tenth (krules's own way out) says nothing.
func TestReaperIsUnableToReapOnlyAfterTenFailedTries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		refusals int // non-blockable starts refused before one succeeds
		cancelAt int // the non-blockable start that cancels the reaper's context, if any
		want     mmnotifier.ReapResult
	}{
		{"reaped on the tenth try", 9, 0, mmnotifier.ReapResult{Tries: 10, Reaped: true, Freed: 1}},
		{"stopped after the ninth", 10, 9, mmnotifier.ReapResult{Tries: 9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			krulestest.Check(t)
			log := krulestest.CaptureLog(t)
			mm := newMM(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			calls := 0 // on the reaper's goroutine only
			f := &mmnotifier.Funcs{Start: func(r *mmnotifier.Range) error {
				if r.Blockable() {
					return nil
				}
				calls++
				if calls == tc.cancelAt {
					cancel()
				}
				if calls <= tc.refusals {
					return mmnotifier.ErrAgain
				}
				return nil
			}}
			_, err := mmnotifier.Register(mm, f.Notifier())
			require.NoError(t, err)
			mapTouched(t, mm, 1)
			require.Equal(t, tc.want, mm.OOMReap(ctx, mmnotifier.WithRetryDelay(time.Millisecond)))
			require.NotContains(t, log.String(), "oom_reaper: unable to reap")
		})
	}
}

// ReapResult.Freed counts every page the reaper freed: those of every VMA
// of a try, and those of every try, when a VMA refused once is reaped by
// the next.
func TestReaperCountsEveryPageItFreed(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("first VMA refused once %v", refuse), func(t *testing.T) {
			krulestest.Check(t)
			krulestest.CaptureLog(t)
			mm := newMM(t)
			a := mapTouched(t, mm, 1)
			mapTouched(t, mm, 2)
			refused := !refuse // on the reaper's goroutine only
			f := &mmnotifier.Funcs{Start: func(r *mmnotifier.Range) error {
				if !r.Blockable() && r.Start == a && !refused {
					refused = true
					return mmnotifier.ErrAgain
				}
				return nil
			}}
			_, err := mmnotifier.Register(mm, f.Notifier())
			require.NoError(t, err)
			want := mmnotifier.ReapResult{Tries: 1, Reaped: true, Freed: 3}
			if refuse {
				want.Tries = 2
			}
			require.Equal(t, want, mm.OOMReap(context.Background(), mmnotifier.WithRetryDelay(time.Millisecond)))
			require.Zero(t, mm.RSS())
		})
	}
}

// __oom_reap_task_mm invalidates each VMA whole, touched or not, with a
// non-blockable MMU_NOTIFY_UNMAP.
func TestReaperInvalidatesEachVMAAsANonBlockableUnmap(t *testing.T) {
	krulestest.Check(t)
	krulestest.CaptureLog(t)
	mm, rec := recordedMM(t)
	a := mapTouched(t, mm, 2)
	b, err := mm.Mmap(pg, mmnotifier.ProtRead)
	require.NoError(t, err)
	rec.take()
	require.True(t, mm.OOMReap(context.Background()).Reaped)
	var starts []call
	for _, c := range rec.take() {
		if c.what == "start" {
			starts = append(starts, c)
		}
	}
	require.Equal(t, []call{
		{who: "n", what: "start", event: mmnotifier.EventUnmap, start: a, end: a + 2*pg},
		{who: "n", what: "start", event: mmnotifier.EventUnmap, start: b, end: b + pg},
	}, starts)
}
