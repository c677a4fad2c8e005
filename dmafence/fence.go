package dmafence

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
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
// returns the first: dma_fence_context_alloc.
func ContextAlloc(n int) uint64 { return contextCounter.Add(uint64(n)) - uint64(n) + 1 }

// Fence is the kernel's struct dma_fence: a one-shot completion of a unit of
// work on a timeline (a context and a sequence number in it). It is
// signalled exactly once, by Signal or SignalErr, which runs the callbacks
// added with AddCallback; Wait waits for it. The zero Fence is not usable:
// make one with New. Fences are shared by pointer; see the package
// documentation for why there is no get/put.
type Fence struct {
	context, seqno uint64
	signaled       atomic.Bool
	done           chan struct{} // closed when signalled
	mu             sync.Mutex    // fence->lock: guards the fields below
	err            error
	timestamp      time.Time
	cbs            []func(*Fence)
}

// New returns an unsignalled fence of timeline context with sequence number
// seqno: dma_fence_init.
func New(context, seqno uint64) *Fence {
	return &Fence{context: context, seqno: seqno, done: make(chan struct{})}
}

// Context returns the fence's timeline.
func (f *Fence) Context() uint64 { return f.context }

// Seqno returns the fence's sequence number on its timeline.
func (f *Fence) Seqno() uint64 { return f.seqno }

// IsLater reports whether f comes after o on their common timeline
// (dma_fence_is_later); fences of different timelines are not ordered.
func (f *Fence) IsLater(o *Fence) bool { return f.context == o.context && f.seqno > o.seqno }

// Signal completes the fence: dma_fence_signal. It runs the callbacks, in
// the order they were added, on the calling goroutine inside an atomic
// section (the kernel runs them under the fence's spinlock), so they must
// not sleep. Signal is a fence signalling section itself (it opens one if
// the caller is in none), and wakes every waiter. Signalling a fence twice
// is reported and returns ErrAlreadySignaled, changing nothing.
func (f *Fence) Signal() error { return f.signal(nil) }

// SignalErr records err as the fence's error and signals it:
// dma_fence_set_error followed by dma_fence_signal.
func (f *Fence) SignalErr(err error) error { return f.signal(err) }

func (f *Fence) signal(err error) error {
	cookie := BeginSignalling()
	defer EndSignalling(cookie)
	f.mu.Lock()
	if f.signaled.Load() {
		f.mu.Unlock()
		krules.Emit(krules.Warn(krules.FenceMisuse,
			"dma_fence_signal: fence already signaled (context "+u64(f.context)+", seqno "+u64(f.seqno)+")", 2))
		return ErrAlreadySignaled
	}
	f.err, f.timestamp = err, time.Now()
	cbs := f.cbs
	f.cbs = nil
	f.signaled.Store(true)
	close(f.done)
	f.mu.Unlock()
	if len(cbs) > 0 {
		nonblock.StartAtomic()
		for _, cb := range cbs {
			cb(f)
		}
		nonblock.EndAtomic()
	}
	return nil
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
	return f.timestamp
}

// Done returns a channel closed when the fence is signalled, for select.
// Receiving from it is a wait the annotations do not see; prefer Wait.
func (f *Fence) Done() <-chan struct{} { return f.done }

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
	nonblock.MightSleep()
	mightWait()
	if f.signaled.Load() {
		return nil
	}
	if task.Tracking() { // the hung-task detector's view (kernel/hung_task.c)
		defer task.EndWait(task.BeginWait(unsafe.Pointer(f), 0))
	}
	select {
	case <-f.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitTimeout waits up to timeout for the fence: dma_fence_wait_timeout
// with intr = false. It returns the time left (at least 1ns) once signalled,
// 0 on timeout. Forever (or any negative timeout) waits as long as it
// takes and returns Forever.
func (f *Fence) WaitTimeout(timeout time.Duration) time.Duration {
	nonblock.MightSleep()
	mightWait()
	return waitDone(unsafe.Pointer(f), f.done, timeout)
}

// waitDone waits for done up to timeout; on is what is waited for, for
// the hung-task detector (kernel/hung_task.c).
func waitDone(on unsafe.Pointer, done <-chan struct{}, timeout time.Duration) time.Duration {
	if timeout < 0 {
		timeout = Forever
	}
	select {
	case <-done:
		return max(timeout, 1)
	default:
	}
	if timeout != 0 && task.Tracking() {
		defer task.EndWait(task.BeginWait(on, 1))
	}
	if timeout == Forever {
		<-done
		return Forever
	}
	if timeout == 0 {
		return 0
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
