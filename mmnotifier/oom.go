package mmnotifier

import (
	"context"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/nonblock"
)

// The OOM reaper (mm/oom_kill.c): it tears the pages out of an OOM victim's
// address space without waiting for the victim, so it must never block on
// anything the victim might hold. It takes mmap_lock only with a trylock and
// invalidates with non-blockable ranges; a notifier that would have to sleep
// returns ErrAgain and the reaper tries again later.

const (
	// MaxOOMReapRetries is MAX_OOM_REAP_RETRIES: the tries before the
	// reaper gives up.
	MaxOOMReapRetries = 10
	// OOMReapRetryDelay is the sleep between tries: HZ/10.
	OOMReapRetryDelay = 100 * time.Millisecond
)

// ReapOption configures OOMReap.
type ReapOption func(*reapConfig)

type reapConfig struct{ delay time.Duration }

// WithRetryDelay sets the sleep between tries, for tests and benchmarks
// that cannot wait the kernel's 100 ms ten times.
func WithRetryDelay(d time.Duration) ReapOption { return func(c *reapConfig) { c.delay = d } }

// ReapResult says what OOMReap did.
type ReapResult struct {
	// Tries counts the attempts (oom_reap_task_mm calls), 1 to
	// MaxOOMReapRetries.
	Tries int
	// Reaped says the last attempt succeeded (or found the address space
	// already reaped or torn down).
	Reaped bool
	// Freed counts the pages the reaper freed.
	Freed int64
}

// OOMReap reaps mm as the oom_reaper kthread reaps an OOM victim
// (oom_reap_task), on a goroutine named "oom_reaper" that it waits for:
// up to MaxOOMReapRetries tries, OOMReapRetryDelay apart. Each try takes
// mmap_lock with a trylock (failing means: try again) and, for every VMA,
// starts a non-blockable MMU_NOTIFY_UNMAP invalidation; if a notifier
// returns ErrAgain the VMA is skipped and the try fails, else its pages are
// unmapped, the invalidation ends and the pages are freed. A successful try
// logs "oom_reaper: reaped process …"; if every try fails, the reaper logs
// "oom_reaper: unable to reap pid:N (comm)" and the victim's mmap_lock
// state (krules.Logf). That is a pr_info in the kernel, not a report: a
// notifier that answers ErrAgain whenever it would sleep does nothing
// wrong. The result's Reaped says it failed.
// Either way the address space is marked reaped (MMF_OOM_SKIP): a later
// OOMReap returns at once, and touching its pages fails with ErrFault, as
// the kernel's SIGBUS for an unstable mm.
//
// If ctx is done the reaper stops between tries and OOMReap returns what
// it had done; the kernel's 2 s grace before queueing a victim is left to
// the caller.
func (mm *MM) OOMReap(ctx context.Context, opts ...ReapOption) ReapResult {
	cfg := reapConfig{delay: OOMReapRetryDelay}
	for _, o := range opts {
		o(&cfg)
	}
	done := make(chan ReapResult, 1)
	krules.Go("oom_reaper", func() { done <- mm.reapTask(ctx, cfg) })
	return <-done
}

// reapTask is oom_reap_task.
func (mm *MM) reapTask(ctx context.Context, cfg reapConfig) ReapResult {
	var res ReapResult
	for res.Tries < MaxOOMReapRetries {
		res.Tries++
		ok, freed := mm.reapTaskMM()
		res.Freed += freed
		if ok {
			res.Reaped = true
			break
		}
		if nonblock.SleepContext(ctx, cfg.delay) != nil {
			break
		}
	}
	if !res.Reaped && res.Tries == MaxOOMReapRetries && mm.flags.Load()&mmfOOMSkip == 0 {
		// pr_info, then sched_show_task and debug_show_all_locks, of which
		// the victim's mmap_lock is what tells why.
		krules.Logf("oom_reaper: unable to reap %s\nvictim %s: mmap_lock %s", mm, mm, lockState(mm))
	}
	mm.flags.Or(mmfOOMSkip)
	return res
}

func lockState(mm *MM) string {
	if mm.mmapLock.IsLocked() {
		return "held"
	}
	return "free"
}

// reapTaskMM is oom_reap_task_mm: one try. It reports whether the try
// succeeded and the pages it freed.
func (mm *MM) reapTaskMM() (bool, int64) {
	if !mm.mmapLock.TryRLock() {
		return false, 0
	}
	defer mm.mmapLock.RUnlock()
	if mm.flags.Load()&mmfOOMSkip != 0 {
		return true, 0
	}
	ok, freed := mm.reap()
	if ok {
		krules.Logf("oom_reaper: reaped process %d (%s), now anon-rss:%dkB, file-rss:0kB, shmem-rss:0kB",
			mm.pid, mm.comm, mm.rss.Load()*PageSize/1024)
	}
	return ok, freed
}

// reap is __oom_reap_task_mm: every VMA (all are anonymous) is unmapped
// under a non-blockable invalidation, or skipped if a notifier refuses.
func (mm *MM) reap() (bool, int64) {
	mm.flags.Or(mmfUnstable)
	ok := true
	var freed int64
	for _, v := range mm.vmas {
		r := NewRange(mm, EventUnmap, v.start, v.end)
		if InvalidateRangeStartNonblock(&r) != nil {
			ok = false
			continue
		}
		mm.ptl.Lock()
		pages := mm.zap(nil, v.start, v.end)
		mm.ptl.Unlock()
		InvalidateRangeEnd(&r)
		mm.freePages(pages)
		freed += int64(len(pages))
	}
	return ok, freed
}

// Reaped reports whether the OOM reaper is done with mm (MMF_OOM_SKIP):
// oom_reap_task sets the flag once it stops, whether it reaped the address
// space or gave up after MaxOOMReapRetries, so true does not mean the pages
// were freed; ReapResult.Reaped says which.
func (mm *MM) Reaped() bool { return mm.flags.Load()&mmfOOMSkip != 0 }
