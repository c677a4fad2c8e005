package dmafence

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/nonblock"
)

// ErrAlreadySignaled is -EINVAL from Signal: the fence was signalled before.
var ErrAlreadySignaled = errors.New("dma_fence: already signaled (EINVAL)")

// ErrSignaled is -ENOENT from AddCallback: the fence is signalled already,
// the callback was not added.
var ErrSignaled = errors.New("dma_fence: already signaled, callback not added (ENOENT)")

// contextCounter is dma_fence_context_counter, the kernel global that hands
// out timelines. Context 0 is never given out (the kernel's stub fence
// uses it).
var contextCounter atomic.Uint64

// ContextAlloc reserves n consecutive fence contexts (timelines) and
// returns the first: dma_fence_context_alloc. Asking for none is reported,
// as the kernel's WARN_ON(!num), and returns the context the next call
// will start at.
func ContextAlloc(n int) uint64 {
	if n == 0 {
		krules.Emit(krules.Warn(krules.FenceMisuse, "dma_fence_context_alloc: WARN_ON(!num): no context asked for", 1))
	}
	return contextCounter.Add(uint64(n)) - uint64(n) + 1
}

// Fence is the kernel's struct dma_fence: a one-shot completion of a unit of
// work on a timeline (a context and a sequence number in it). It is
// signalled exactly once, by Signal or SignalErr, which runs the callbacks
// added with AddCallback; Wait waits for it. The zero Fence is not usable:
// make one with New. Fences are shared by pointer; see the package
// documentation for why there is no get/put.
//
// A Fence is one allocation of 96 bytes, less than the channel of the bench
// figure "Fence Signal+Wait" baseline (112): the channel a waiter sleeps on
// is made only when one has to sleep (the kernel's waiter, too, joins the
// fence only then: dma_fence_default_wait adds a callback), and the
// timestamp is a monotonic offset rather than a time.Time. A fence
// signalled before anybody waits, the common case, never makes a channel.
// With the channel made in New and a time.Time, the figure allocated 224
// bytes in 2 objects an op and ran 2203 instructions; now 96 bytes in 1,
// about 1290 (cachegrind, the collector's share varying by ±40; AMD EPYC
// (Zen 3, KVM)).
type Fence struct {
	context, seqno uint64
	mu             sync.Mutex // fence->lock: guards the fields below
	signaled       atomic.Bool
	seqno64        bool // ops->use_64bit_seqno: New64's fences order by all 64 bits
	err            error
	stamp          time.Duration // when signalled, as an offset from epoch
	cbs            []func(*Fence)
	wake           chan struct{} // made by the first sleeper, closed by the signal
}

// epoch is the origin of fence timestamps. It carries a monotonic clock
// reading, so a stamp is monotonic, as the kernel's ktime_get
// (CLOCK_MONOTONIC), and 8 bytes where a time.Time is 24.
var epoch = time.Now()

// closed is what Done returns for a fence signalled before anybody asked:
// closed once, never written again.
var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// New returns an unsignalled fence of timeline context with sequence number
// seqno: dma_fence_init with ops that leave use_64bit_seqno unset, as most
// drivers' do, so IsLater orders it by the lower 32 bits of its seqno.
func New(context, seqno uint64) *Fence {
	return &Fence{context: context, seqno: seqno}
}

// New64 is New for a fence whose ops set use_64bit_seqno, as
// dma_fence_chain's do: IsLater orders it by its whole 64-bit seqno.
func New64(context, seqno uint64) *Fence {
	return &Fence{context: context, seqno: seqno, seqno64: true}
}

// Context returns the fence's timeline.
func (f *Fence) Context() uint64 { return f.context }

// Seqno returns the fence's sequence number on its timeline.
func (f *Fence) Seqno() uint64 { return f.seqno }

// IsLater reports whether f comes after o on their common timeline
// (dma_fence_is_later). Fences of different timelines are not ordered:
// comparing them returns false and is reported (kind FenceMisuse), as the
// kernel's WARN_ON(f1->context != f2->context). As v6.12's
// __dma_fence_is_later, which looks at f's ops only, a fence made with
// New64 compares the seqnos as 64-bit numbers, and one made with New
// compares their lower 32 bits with wrap-around: f is later when
// int32(uint32(f.seqno) - uint32(o.seqno)) > 0, so seqno 1 is later than
// 0xffffffff and 1<<32 is not later than 0, for drivers whose hardware
// counts only 32 bits.
func (f *Fence) IsLater(o *Fence) bool {
	if f.context != o.context {
		krules.Emit(krules.Warn(krules.FenceMisuse, "dma_fence_is_later: WARN_ON(f1->context != f2->context): context "+u64(f.context)+" against "+u64(o.context), 1))
		return false
	}
	if f.seqno64 {
		return f.seqno > o.seqno
	}
	return int32(uint32(f.seqno)-uint32(o.seqno)) > 0
}

// Signal completes the fence: dma_fence_signal. It runs the callbacks, in
// the order they were added, on the calling goroutine inside an atomic
// section (the kernel runs them under the fence's spinlock), so they must
// not sleep. Signal is a fence signalling section itself (it opens one if
// the caller is in none), and wakes every waiter. Signalling a fence twice
// returns ErrAlreadySignaled (dma_fence_signal's -EINVAL), changes nothing,
// and is reported (kind FenceMisuse): the kernel lets a second signal pass
// silently, but a fence a driver signals twice is a completion tracked
// twice, and an opportunistic second signal is better written as a test of
// IsSignaled.
func (f *Fence) Signal() error { return f.signal(nil) }

// SignalErr records err as the fence's error and signals it:
// dma_fence_set_error followed by dma_fence_signal. As dma_fence_set_error
// it warns if err is nil: the kernel's error must be a negative errno
// (WARN_ON(error >= 0)). On a fence signalled already it is the second
// signal Signal reports, once, and the error the waiters saw stays (the
// kernel's dma_fence_set_error would WARN and overwrite it).
func (f *Fence) SignalErr(err error) error {
	if err == nil {
		krules.Emit(krules.Warn(krules.FenceMisuse,
			"dma_fence_set_error: WARN_ON(error >= 0): no error to set", 1))
	}
	return f.signal(err)
}

// signal is dma_fence_signal. It opens its signalling section itself,
// rather than through BeginSignalling, so that dma_fence_map's site is
// here, as the kernel's is in dma_fence_signal, and the acquisition takes
// AcquireShared's cached path. It closes the section without a defer
// unless callbacks run (which may panic): the defer made the bench figure
// "Fence Signal+Wait" 818 instructions instead of 802 (cachegrind with
// GOGC=off, which keeps the collector's varying share out; AMD EPYC (Zen 3,
// KVM)).
func (f *Fence) signal(err error) error {
	t := task.Lookup()
	open := t == nil || opensSection(t)
	if open {
		fenceMap.AcquireShared()
	}
	f.mu.Lock()
	if f.signaled.Load() {
		f.mu.Unlock()
		if open {
			fenceMap.Release()
		}
		krules.Emit(krules.Warn(krules.FenceMisuse,
			"dma_fence_signal: fence already signaled (context "+u64(f.context)+", seqno "+u64(f.seqno)+")", 2))
		return ErrAlreadySignaled
	}
	f.err, f.stamp = err, time.Since(epoch)
	cbs := f.cbs
	f.cbs = nil
	f.signaled.Store(true)
	if f.wake != nil {
		close(f.wake)
	}
	f.mu.Unlock()
	if len(cbs) > 0 {
		f.runCallbacks(cbs, open)
	} else if open {
		fenceMap.Release()
	}
	return nil
}

// runCallbacks runs the callbacks of a fence just signalled, in an atomic
// section (the kernel runs them under the fence's spinlock), and closes the
// signalling section if the signal opened one (open), even if a callback
// panics.
func (f *Fence) runCallbacks(cbs []func(*Fence), open bool) {
	if open {
		defer fenceMap.Release()
	}
	nonblock.StartAtomic()
	for _, cb := range cbs {
		cb(f)
	}
	nonblock.EndAtomic()
}

// IsSignaled reports whether the fence is signalled: dma_fence_is_signaled.
func (f *Fence) IsSignaled() bool { return f.signaled.Load() }

// Err returns the error the fence was signalled with, nil if it succeeded
// or is not signalled yet (dma_fence_get_status without the 0/1).
func (f *Fence) Err() error {
	if !f.signaled.Load() {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Timestamp returns when the fence was signalled, the zero time if it is
// not.
func (f *Fence) Timestamp() time.Time {
	if !f.signaled.Load() {
		return time.Time{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return epoch.Add(f.stamp)
}

// Done returns a channel closed when the fence is signalled, for select.
// Receiving from it is a wait the annotations do not see; prefer Wait.
func (f *Fence) Done() <-chan struct{} {
	if w := f.waiter(); w != nil {
		return w
	}
	return closed
}

// waiter returns the channel the signal closes, made on first need, or nil
// if the fence is signalled.
func (f *Fence) waiter() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.signaled.Load() {
		return nil
	}
	if f.wake == nil {
		f.wake = make(chan struct{})
	}
	return f.wake
}

// AddCallback arranges for fn to run when the fence is signalled:
// dma_fence_add_callback. fn runs on the signalling goroutine inside an
// atomic section and must not sleep. If the fence is signalled already,
// fn is not added and ErrSignaled is returned.
func (f *Fence) AddCallback(fn func(*Fence)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.signaled.Load() {
		return ErrSignaled
	}
	f.cbs = append(f.cbs, fn)
	return nil
}

// Wait waits until the fence is signalled or ctx is done:
// dma_fence_wait(fence, intr = true). It may sleep (might_sleep), and tells
// lockdep that the caller waits for fences (__dma_fence_might_wait), so
// every lock held here is ordered before dma_fence_map (a goroutine that
// holds no lock has nothing to order and skips that). It returns nil once
// the fence is signalled (whatever its error; see Err), or ctx.Err().
func (f *Fence) Wait(ctx context.Context) error {
	mightSleepWait()
	if f.signaled.Load() {
		return nil
	}
	w := f.waiter()
	if w == nil {
		return nil
	}
	if task.Tracking() { // the hung-task detector's view (kernel/hung_task.c)
		defer task.EndWait(task.BeginWait(unsafe.Pointer(f), 0))
	}
	select {
	case <-w:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitTimeout waits up to timeout for the fence: dma_fence_wait_timeout
// with intr = false. It returns the time left (at least 1ns) once signalled,
// 0 on timeout. Forever waits as long as it takes and returns Forever. A
// negative timeout is the caller's bug: it is reported, as the kernel's
// WARN_ON(timeout < 0), and returns InvalidTimeout at once, before the
// might-sleep check and without looking at the fence.
func (f *Fence) WaitTimeout(timeout time.Duration) time.Duration {
	if timeout < 0 {
		krules.Emit(krules.Warn(krules.FenceMisuse,
			"dma_fence_wait_timeout: WARN_ON(timeout < 0): a negative timeout, returning -EINVAL", 1))
		return InvalidTimeout
	}
	mightSleepWait()
	if f.signaled.Load() {
		return max(timeout, 1)
	}
	if timeout == 0 {
		return 0 // a poll: no channel to make
	}
	done := f.waiter()
	if done == nil {
		return max(timeout, 1)
	}
	return waitDone(unsafe.Pointer(f), done, timeout)
}

// waitDone waits for done up to timeout, not 0, for an unsignalled fence;
// on is what is waited for, for the hung-task detector (kernel/hung_task.c).
func waitDone(on unsafe.Pointer, done <-chan struct{}, timeout time.Duration) time.Duration {
	if task.Tracking() {
		defer task.EndWait(task.BeginWait(on, 1))
	}
	if timeout == Forever {
		<-done
		return Forever
	}
	start := time.Now()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return max(timeout-time.Since(start), 1)
	case <-t.C:
		return 0
	}
}

// Forever is MAX_SCHEDULE_TIMEOUT: a wait without a time limit.
const Forever = time.Duration(math.MaxInt64)

// InvalidTimeout is what a wait given a negative timeout returns: the
// kernel's -EINVAL, as a negative duration.
const InvalidTimeout = -time.Duration(syscall.EINVAL)

func u64(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
