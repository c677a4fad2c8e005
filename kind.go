package krules

import "github.com/krules/krules/internal/splat"

// Kind says which rule a report is about. Each kind has one kernel headline;
// tests should match on the kind, and on the headline's fixed part.
type Kind int

const (
	_ Kind = iota

	// SleepInAtomic: "BUG: sleeping function called from invalid context",
	// a might-sleep check inside an atomic or non-block section.
	SleepInAtomic
	// AssumeAtomic: "BUG: assuming atomic context", CantSleep outside one.
	AssumeAtomic
	// NonBlockImbalance: a WARNING for nonblock.End without Start, or an
	// atomic section ended that was never started.
	NonBlockImbalance
	// ScheduleInNonBlock: "BUG: scheduling in a non-blocking section", a
	// goroutine that really blocked inside a section (found by the tracer).
	ScheduleInNonBlock
	// AllocBlockInNonBlock: the Go runtime blocked the goroutine inside a
	// section while it allocated (GC assist or GC start): Go's own
	// "allocation may sleep".
	AllocBlockInNonBlock
	// GoroutineID: a WARNING that goroutine ids come from the slow path.
	GoroutineID

	// RecursiveLocking: "WARNING: possible recursive locking detected".
	RecursiveLocking
	// CircularDependency: "WARNING: possible circular locking dependency detected".
	CircularDependency
	// BadUnlockBalance: "WARNING: bad unlock balance detected!".
	BadUnlockBalance
	// HeldLockFreed: "WARNING: held lock freed!".
	HeldLockFreed
	// NestedLockNotTaken: "WARNING: Nested lock was not taken".
	NestedLockNotTaken
	// InvalidSubclass: "BUG: looking up invalid subclass".
	InvalidSubclass
	// LockdepLimit: "BUG: MAX_LOCKDEP_KEYS too low!" and the rest of the
	// MAX_* family; validation turns off.
	LockdepLimit
	// LocksHeldAtExit: "WARNING: NAME/GOID still has locks held!".
	LocksHeldAtExit
	// LockdepMisuse: the validator's other WARNINGs (pinning, downgrading a
	// read lock, an unregistered key, a held lock re-keyed badly, ...).
	LockdepMisuse
	// InvalidWaitContext: "[ BUG: Invalid wait context ]", a lock taken
	// where its wait type may not wait (a mutex inside a spin lock).
	InvalidWaitContext
	// SuspiciousRCU: "WARNING: suspicious RCU usage", an RCU rule broken
	// (synchronize_rcu in a read section, an unbalanced rcu_read_unlock).
	SuspiciousRCU
	// SyncMisuse: a WARNING for misuse of a semaphore, completion or
	// seqcount (reinit_completion with waiters, a seqcount written without
	// its lock).
	SyncMisuse

	// AllocFailure: "page allocation failure: order:N, mode:0x...".
	AllocFailure
	// GFPMisuse: a WARNING for a GFP combination the kernel warns about.
	GFPMisuse
	// BadPage: "BUG: Bad page state in process NAME  pfn:N", a page block
	// freed twice, with the wrong order, or to the wrong zone; a zone
	// reports 60 a minute at most, as bad_page does.
	BadPage
	// SlabError: "BUG kmalloc-N (...): Object already free" and the other
	// kfree checks (a pointer kmalloc did not return, a misaligned one).
	SlabError

	// MempoolMisuse: a WARNING for misuse of a mempool (foreign or double
	// free, __GFP_ZERO, elements outstanding at Close).
	MempoolMisuse
	// MempoolPoison: "BUG: mempool element poison mismatch".
	MempoolPoison
	// MempoolDeadlock: a goroutine waits on a pool for longer than the
	// timeout while holding elements of that pool.
	MempoolDeadlock

	// NotifierMisuse: a WARNING from the MMU notifier rules (a failing
	// callback in blockable context, a failing notifier with an end
	// callback, a non-EAGAIN failure, an interval callback returning false
	// when it may block).
	NotifierMisuse
	// OOMReaperFailure is not raised: the kernel's "oom_reaper: unable to
	// reap" is a pr_info (oom_reap_task), which krules prints with Logf,
	// and ReapResult.Reaped says the reap failed. The kind stays so that
	// the numbering of the others does not change.
	OOMReaperFailure

	// FenceMisuse: a WARNING from the dma-fence rules (a fence signalled
	// twice, a signalling section ended with the wrong cookie), or a fence
	// added to a reservation object without room reserved, reported with
	// the kernel's BUG_ON(fobj->num_fences >= fobj->max_fences).
	FenceMisuse

	// HungTask: "INFO: task NAME:ID blocked for more than N seconds.", a
	// goroutine waiting on a krules primitive past the hung-task timeout.
	HungTask

	kindCount
)

var kindNames = [...]string{
	SleepInAtomic:        "sleep-in-atomic",
	AssumeAtomic:         "assume-atomic",
	NonBlockImbalance:    "non-block-imbalance",
	ScheduleInNonBlock:   "schedule-in-non-block",
	AllocBlockInNonBlock: "alloc-block-in-non-block",
	GoroutineID:          "goroutine-id",
	RecursiveLocking:     "recursive-locking",
	CircularDependency:   "circular-dependency",
	BadUnlockBalance:     "bad-unlock-balance",
	HeldLockFreed:        "held-lock-freed",
	NestedLockNotTaken:   "nested-lock-not-taken",
	InvalidSubclass:      "invalid-subclass",
	LockdepLimit:         "lockdep-limit",
	LocksHeldAtExit:      "locks-held-at-exit",
	LockdepMisuse:        "lockdep-misuse",
	InvalidWaitContext:   "invalid-wait-context",
	SuspiciousRCU:        "suspicious-rcu",
	SyncMisuse:           "sync-misuse",
	AllocFailure:         "alloc-failure",
	GFPMisuse:            "gfp-misuse",
	BadPage:              "bad-page",
	SlabError:            "slab-error",
	MempoolMisuse:        "mempool-misuse",
	MempoolPoison:        "mempool-poison",
	MempoolDeadlock:      "mempool-deadlock",
	NotifierMisuse:       "notifier-misuse",
	OOMReaperFailure:     "oom-reaper-failure",
	FenceMisuse:          "fence-misuse",
	HungTask:             "hung-task",
}

// kindTaints is what a report of each kind built with NewReport, or as a
// Report value, adds to the taint when emitted: what the kernel function
// that prints it passes to add_taint. __might_resched, __cant_sleep and
// __schedule_bug taint W; bad_page and SLUB's object_err taint B; lockdep's
// reports, warn_alloc, kmalloc_fix_flags, the mempool poison check and the
// hung-task report add none. A report built with Warn taints W whatever its
// kind, as __warn does, and one built with Bug taints D, as a BUG_ON's
// oops does (oops_end).
var kindTaints = [...]splat.Taint{
	SleepInAtomic:        splat.TaintWarn,
	AssumeAtomic:         splat.TaintWarn,
	NonBlockImbalance:    splat.TaintWarn,
	ScheduleInNonBlock:   splat.TaintWarn,
	AllocBlockInNonBlock: splat.TaintWarn,
	GoroutineID:          splat.TaintWarn,
	SyncMisuse:           splat.TaintWarn,
	BadPage:              splat.TaintBadPage,
	SlabError:            splat.TaintBadPage,
	MempoolMisuse:        splat.TaintWarn,
	NotifierMisuse:       splat.TaintWarn,
	FenceMisuse:          splat.TaintWarn,
}

// String returns the kind's short name, such as "circular-dependency".
func (k Kind) String() string {
	if k > 0 && k < kindCount {
		return kindNames[k]
	}
	return "unknown"
}

// Family is the part of the kernel whose rules a kind of report is about,
// for tools that count reports by subsystem.
type Family int

const (
	_ Family = iota
	// FamilySleep: might_sleep() and non-block sections (kernel/sched/core.c).
	FamilySleep
	// FamilyLockdep: the lock validator (kernel/locking/lockdep.c).
	FamilyLockdep
	// FamilyGFP: the page and slab allocators (mm/page_alloc.c, mm/slub.c).
	FamilyGFP
	// FamilyMempool: mm/mempool.c.
	FamilyMempool
	// FamilyMMNotifier: mm/mmu_notifier.c and the OOM reaper (mm/oom_kill.c).
	FamilyMMNotifier
	// FamilyDMAFence: drivers/dma-buf (dma-fence.c, dma-resv.c).
	FamilyDMAFence
)

var kindFamilies = [...]Family{
	SleepInAtomic:        FamilySleep,
	AssumeAtomic:         FamilySleep,
	NonBlockImbalance:    FamilySleep,
	ScheduleInNonBlock:   FamilySleep,
	AllocBlockInNonBlock: FamilySleep,
	GoroutineID:          FamilySleep,
	RecursiveLocking:     FamilyLockdep,
	CircularDependency:   FamilyLockdep,
	BadUnlockBalance:     FamilyLockdep,
	HeldLockFreed:        FamilyLockdep,
	NestedLockNotTaken:   FamilyLockdep,
	InvalidSubclass:      FamilyLockdep,
	LockdepLimit:         FamilyLockdep,
	LocksHeldAtExit:      FamilyLockdep,
	LockdepMisuse:        FamilyLockdep,
	InvalidWaitContext:   FamilyLockdep,
	SuspiciousRCU:        FamilyLockdep,
	SyncMisuse:           FamilySleep,
	AllocFailure:         FamilyGFP,
	GFPMisuse:            FamilyGFP,
	BadPage:              FamilyGFP,
	SlabError:            FamilyGFP,
	MempoolMisuse:        FamilyMempool,
	MempoolPoison:        FamilyMempool,
	MempoolDeadlock:      FamilyMempool,
	NotifierMisuse:       FamilyMMNotifier,
	OOMReaperFailure:     FamilyMMNotifier,
	FenceMisuse:          FamilyDMAFence,
	HungTask:             FamilyLockdep, // with lockdep, it shows the held locks
}

// Family returns the part of the kernel the kind's rule comes from (0 for
// an unknown kind).
func (k Kind) Family() Family {
	if k > 0 && int(k) < len(kindFamilies) {
		return kindFamilies[k]
	}
	return 0
}
