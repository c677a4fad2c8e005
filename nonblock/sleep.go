package nonblock

import (
	"context"
	"runtime"
	"time"
)

// Sleep sleeps for d after checking that the goroutine may sleep: msleep().
func Sleep(d time.Duration) {
	MightSleep()
	time.Sleep(d)
}

// SleepContext sleeps for d or until ctx is done, after checking that the
// goroutine may sleep: the killable sleep. It returns ctx.Err() if the sleep
// was cut short.
func SleepContext(ctx context.Context, d time.Duration) error {
	MightSleep()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Receive waits for a value from ch, or for ctx to be done, after checking
// that the goroutine may sleep. ok is false if ch was closed.
func Receive[T any](ctx context.Context, ch <-chan T) (v T, ok bool, err error) {
	MightSleep()
	select {
	case v, ok = <-ch:
		return v, ok, nil
	case <-ctx.Done():
		return v, false, ctx.Err()
	}
}

// Schedule yields the processor after checking that the goroutine may sleep.
func Schedule() {
	MightSleep()
	runtime.Gosched()
}

// CondResched is the kernel's cond_resched(): a might-sleep check and a
// chance for other goroutines to run, for long loops.
func CondResched() {
	MightSleep()
	runtime.Gosched()
}
