package dmafence_test

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// lockAll runs drm_exec_until_all_locked over objs, one fence slot each,
// as a command submission does, and returns the locked exec.
func lockAll(t *testing.T, e *drmExec, objs []*gemObject) {
	for e.cleanup() {
		err := e.prepareArray(objs, 1)
		if e.isContended() {
			continue // drm_exec_retry_on_contention
		}
		require.NoError(t, err)
	}
}

// The stress shape of kernel/locking/test-ww_mutex.c (stress_reorder) on
// drm_exec: workers lock random overlapping sets of objects, duplicates
// included, in random order, publish a fence on each and signal it. No
// report, no deadlock, every object held by one exec at a time, and every
// object locked once however often it was named.
func TestDRMExecStress(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	const nobj, workers, rounds = 16, 6, 150
	objs := make([]*gemObject, nobj)
	for i := range objs {
		objs[i] = newGEMObject("bo")
	}
	var want, backoffs atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			timeline := dmafence.ContextAlloc(1)
			flags := uint32(drmExecIgnoreDuplicates)
			if w%2 == 1 {
				flags |= drmExecInterruptibleWait
			}
			var opts []lockclass.WWCtxOption
			if w%3 == 0 {
				opts = append(opts, lockclass.InjectDeadlocks())
			}
			for seq := range uint64(rounds) {
				set := make([]*gemObject, 1+rng.IntN(6))
				distinct := map[*gemObject]bool{}
				for i := range set {
					set[i] = objs[rng.IntN(nobj)]
					distinct[set[i]] = true
				}
				e := newDRMExec(flags, opts...)
				lockAll(t, e, set)
				require.Len(t, e.objects, len(distinct), "each object locked once")
				fence := dmafence.New(timeline, seq+1)
				for _, o := range e.objects {
					o.resv.AssertHeld()
					require.Nil(t, o.holder, "%s held by two execs", o.name)
					o.holder = e
					o.writes++
					o.resv.AddFence(fence, dmafence.UsageWrite)
				}
				runtime.Gosched()
				for _, o := range e.objects {
					require.Same(t, e, o.holder)
					o.holder = nil
				}
				want.Add(int64(len(distinct)))
				backoffs.Add(int64(e.backoffs))
				e.fini()
				cookie := dmafence.BeginSignalling() // the job's completion
				require.NoError(t, fence.Signal())
				dmafence.EndSignalling(cookie)
			}
		}()
	}
	wg.Wait()
	var got int64
	for _, o := range objs {
		require.False(t, o.resv.WWMutex().IsLocked())
		require.True(t, o.resv.TestSignaled(dmafence.UsageBookkeep))
		got += int64(o.writes)
	}
	require.Equal(t, want.Load(), got)
	require.NotZero(t, backoffs.Load(), "the injected deadlocks ran the back-off path")
}

// An object named twice: -EALREADY, unless DRM_EXEC_IGNORE_DUPLICATES,
// which counts it once.
func TestDRMExecDuplicates(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	a := newGEMObject("a")

	e := newDRMExec(0)
	var err error
	for e.cleanup() {
		err = e.prepareArray([]*gemObject{a, a}, 1)
		if e.isContended() {
			continue
		}
		break // the error path leaves the loop, as the kernel's goto does
	}
	require.ErrorIs(t, err, lockclass.ErrAlready)
	require.Len(t, e.objects, 1)
	e.fini()
	require.False(t, a.resv.WWMutex().IsLocked())

	e = newDRMExec(drmExecIgnoreDuplicates)
	lockAll(t, e, []*gemObject{a, a})
	require.Len(t, e.objects, 1)
	e.fini()
	require.False(t, a.resv.WWMutex().IsLocked())
}

// contended is what a younger exec did against an older one.
type contended struct {
	x, y       *gemObject
	yHeldRetry bool         // y still locked when the next pass began
	objects    []*gemObject // locked when the loop ended
	backoffs   int
	prelocked  *gemObject
	err        error
}

// contend runs an exec (younger) against an older exec holding x: it locks
// y, then x, is told to back off, and runs its next pass once the older
// one lets go of x: before the pass with releaseBeforeRetry, else during
// it. The younger exec ends on its own goroutine, which locked.
func contend(t *testing.T, bugs drmExecBugs, flags uint32, releaseBeforeRetry bool) contended {
	c := contended{x: newGEMObject("x"), y: newGEMObject("y")}
	older := newDRMExec(0)
	lockAll(t, older, []*gemObject{c.x})
	backedOff, retry, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		e := newDRMExec(flags)
		e.bugs = bugs
		for e.cleanup() {
			if e.backoffs > 0 {
				require.Equal(t, c.x, e.contended, "the object it backed off for")
				close(backedOff)
				<-retry
			}
			if c.err = e.lockObj(c.y); e.isContended() {
				continue
			}
			if c.err != nil {
				break
			}
			if c.err = e.lockObj(c.x); e.isContended() {
				continue
			}
			if c.err != nil {
				break
			}
		}
		c.objects = append([]*gemObject(nil), e.objects...)
		c.backoffs, c.prelocked = e.backoffs, e.prelocked
		e.fini()
	}()
	<-backedOff
	c.yHeldRetry = c.y.resv.WWMutex().IsLocked()
	if releaseBeforeRetry {
		older.fini()
		close(retry)
	} else {
		close(retry)
		older.fini()
	}
	<-done
	require.False(t, c.x.resv.WWMutex().IsLocked())
	require.False(t, c.y.resv.WWMutex().IsLocked())
	return c
}

// On contention drm_exec unlocks everything, and on the next pass locks the
// contended object first, with the slow path, then the others; the object
// it prelocked is not locked again when the pass reaches it.
func TestDRMExecContendedLockedFirst(t *testing.T) {
	for _, flags := range []uint32{0, drmExecInterruptibleWait} {
		krulestest.ResetDefault(t)
		krulestest.Check(t)
		c := contend(t, drmExecBugs{}, flags, false)
		require.NoError(t, c.err)
		require.False(t, c.yHeldRetry, "everything unlocked on contention")
		require.Equal(t, 1, c.backoffs)
		require.Equal(t, []*gemObject{c.x, c.y}, c.objects, "contended first")
		require.Nil(t, c.prelocked)
	}
}

// The older exec does not back off: holding y it finds x held by a younger
// one and waits (wait-die: only the younger dies).
func TestDRMExecOlderWaits(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	x, y := newGEMObject("x"), newGEMObject("y")
	older := newDRMExec(0)
	require.True(t, older.cleanup()) // its ticket first: older
	require.NoError(t, older.lockObj(y))
	ready, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		younger := newDRMExec(0)
		lockAll(t, younger, []*gemObject{x})
		close(ready)
		time.Sleep(10 * time.Millisecond) // let the older one queue
		younger.fini()
	}()
	<-ready
	require.NoError(t, older.lockObj(x), "an older ticket waits for a younger holder")
	require.False(t, older.cleanup())
	require.Zero(t, older.backoffs)
	require.Equal(t, []*gemObject{y, x}, older.objects)
	older.fini()
	<-done
}
