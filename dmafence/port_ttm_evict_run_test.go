package dmafence_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/krulestest"
)

// submitTTM is a submission that validates each BO into VRAM as it locks
// it, inside drm_exec's loop (xe's shape): the ticket is still acquiring
// when TTM ticketlocks a BO to evict. On -ENOSPC it leaves the ww
// transaction and reports it, for the caller to retry.
func submitTTM(t *testing.T, bdev *ttmDevice, set []*ttmBO, flags uint32, timeline, seq uint64) (*drmExec, *dmafence.Fence, error) {
	e := newDRMExec(flags)
	for e.cleanup() {
		for _, bo := range set {
			err := e.prepareObj(bo.gem, 1)
			if e.isContended() {
				break
			}
			require.NoError(t, err)
			if err := bdev.validate(bo, &ttmOperationCtx{kctx: context.Background()}, &e.ticket); err != nil {
				e.fini()
				return nil, nil, err
			}
		}
		if e.isContended() {
			continue
		}
	}
	return e, dmafence.New(timeline, seq), nil
}

// Submissions of random overlapping sets of BOs through a VRAM that holds
// fewer than all of them: they evict each other, waiting for the evicted
// BOs' fences, trylocking and ticketlocking, and back off on contention.
// No report, and every BO of a submission is resident while it is
// reserved: nothing evicts a BO without holding its reservation.
func TestTTMEvictStress(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	const nbo, slots, workers, rounds = 8, 3, 4, 60
	bdev := newTTMDevice(slots)
	bos := make([]*ttmBO, nbo)
	for i := range bos {
		bos[i] = &ttmBO{gem: newGEMObject("bo")}
	}
	var submitted, nospace atomic.Int64
	var wg, jobs sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			timeline := dmafence.ContextAlloc(1)
			for seq := uint64(1); seq <= rounds; {
				set := make([]*ttmBO, 0, slots)
				for _, i := range rng.Perm(nbo)[:1+rng.IntN(slots)] {
					set = append(set, bos[i])
				}
				e, fence, err := submitTTM(t, bdev, set, drmExecInterruptibleWait, timeline, seq)
				if errors.Is(err, errNoSpace) {
					nospace.Add(1)
					runtime.Gosched()
					continue // user space resubmits
				}
				require.NoError(t, err)
				for _, bo := range set {
					require.True(t, bo.inVRAM, "a reserved, validated BO stays resident")
					require.Nil(t, bo.gem.holder)
					bo.gem.holder = e
					bo.gem.resv.AddFence(fence, dmafence.UsageWrite)
				}
				runtime.Gosched()
				for _, bo := range set {
					bo.gem.holder = nil
				}
				e.fini()
				jobs.Add(1)
				go func() { // the job completes later, in a signalling section
					defer jobs.Done()
					cookie := dmafence.BeginSignalling()
					defer dmafence.EndSignalling(cookie)
					require.NoError(t, fence.Signal())
				}()
				submitted.Add(1)
				seq++
			}
		}()
	}
	wg.Wait()
	jobs.Wait()
	require.EqualValues(t, workers*rounds, submitted.Load())
	require.NotZero(t, bdev.evictions.Load())
	t.Logf("%d evictions, %d ticketlocks, %d submissions retried on -ENOSPC",
		bdev.evictions.Load(), bdev.ticketlocks.Load(), nospace.Load())
}

// ticketlockAfterBusyHolder sets up a VRAM of one slot holding x, which a
// CPU fault (ttm_bo_vm_reserve: no ticket) holds, and validates y into it
// from a submission, inside drm_exec's loop or after it (amdgpu's
// amdgpu_cs_parser_bos validates after the loop). The trylocks fail on x;
// the holder lets go as the ticketlock begins, so that it takes x (waiting
// or not) and the eviction succeeds.
func ticketlockAfterBusyHolder(t *testing.T, validateAfterLoop bool) *ttmDevice {
	bdev := newTTMDevice(1)
	x, y := &ttmBO{gem: newGEMObject("x")}, &ttmBO{gem: newGEMObject("y")}
	require.NoError(t, x.gem.resv.Lock(nil))
	require.NoError(t, bdev.validate(x, &ttmOperationCtx{}, nil))
	x.gem.resv.Unlock()

	held, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		require.NoError(t, x.gem.resv.Lock(nil))
		close(held)
		<-release
		x.gem.resv.Unlock()
	}()
	<-held
	bdev.beforeTicketlock = func() { close(release) }
	ctx := &ttmOperationCtx{kctx: context.Background()}
	e := newDRMExec(drmExecInterruptibleWait)
	for e.cleanup() {
		err := e.prepareObj(y.gem, 1)
		if e.isContended() {
			continue
		}
		require.NoError(t, err)
		if !validateAfterLoop {
			require.NoError(t, bdev.validate(y, ctx, &e.ticket))
		}
	}
	if validateAfterLoop {
		require.NoError(t, bdev.validate(y, ctx, &e.ticket))
	}
	require.True(t, y.inVRAM)
	e.fini()
	<-done
	require.False(t, x.inVRAM)
	require.EqualValues(t, 1, bdev.ticketlocks.Load())
	return bdev
}

// Inside the loop the ticket is still acquiring: the ticketlock is an
// ordinary lock of the transaction, and nothing is reported.
func TestTTMTicketlockInsideTheLoop(t *testing.T) {
	krulestest.ResetDefault(t)
	krulestest.Check(t)
	ticketlockAfterBusyHolder(t, false)
}
