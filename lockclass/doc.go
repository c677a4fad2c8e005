// Package lockclass is the Linux kernel's lock validator, lockdep, for
// goroutines, with the kernel's locks on top: Mutex (struct mutex), RWSem
// (rw_semaphore), SpinLock (spinlock_t), RawSpinLock (raw_spinlock_t) and
// RWLock (rwlock_t), plus Map, the lockdep_map pseudo-lock that models waits
// (fs_reclaim, MMU notifiers).
//
// It mirrors kernel/locking/lockdep.c as of v6.12: a lock-order inversion,
// a recursive acquisition, an unbalanced unlock is reported the first time
// the ordering is seen, without the deadlock having to happen, with the
// kernel's report layout ("WARNING: possible circular locking dependency
// detected", the existing chain in reverse order, the CPU0/CPU1 scenario).
//
// # Classes
//
// Validation works on classes, not instances. A lock's class is its key and
// subclass: by default the source line of its Init call, so every lock
// initialised at one line shares a class, as with the kernel's init macros;
// WithKey names an explicit Key instead. A lock used without Init is keyed by
// the site of its first acquisition (deterministic for a given program
// point; give it an Init or a Key when one lock is first taken at several
// places). Subclasses 0–7 tell apart nested locks of one class
// (LockNested); 8 and above is reported. Names print as the kernel prints
// them, name#version/subclass; WithName sets one ("&mm->mmap_lock").
//
// # What is checked
//
// Each goroutine has a held-lock stack (depth 48) in its task record. An
// acquisition is annotated before the lock blocks (a trylock after it
// succeeds) and its chain of held classes, read modes included, is looked up
// in a lock-free cache; only a chain never seen before takes the graph lock
// and runs the checks: the AA matrix for read modes, then a dependency from
// the nearest blocking predecessor (and trylocks above it) to the new lock,
// typed ER/EN/SR/SN, after a breadth-first search proves it closes no strong
// cycle. Releases may come out of order; the locks above are re-acquired and
// re-validated. nest_lock acquisitions (LockNestLock) merge into a reference
// count. The first report turns validation off (debug_locks), unless the
// Validator was made with KeepGoing; the locks keep working either way.
//
// Goroutines have no interrupts, so the kernel's irq-state tracking
// (inconsistent lock state, irq inversions, safe→unsafe: mark_lock_irq and
// check_irq_usage in kernel/locking/lockdep.c) is omitted: every
// acquisition counts as process context with irqs enabled, which is also
// what the usage characters show ({+.+.}).
//
// The wait-context check (check_wait_context) runs with a new chain's other
// checks: a Mutex or RWSem taken inside a SpinLock, RWLock or RawSpinLock is
// "[ BUG: Invalid wait context ]" (after might_sleep's own BUG, as in the
// kernel), and with the validator option ProveRawLockNesting so is a SpinLock
// or RWLock inside a RawSpinLock (raw_spinlock_t).
//
// Deviation: the cycle search keeps "reached strongly" and "reached only
// through recursive reads" apart for each class, so it finds a strong cycle
// whenever one exists; the kernel's search marks a class visited on its first
// arrival and can miss a strong cycle depending on the order of its lists.
//
// # Read-side primitives
//
// RCU read sections (RCUReadLock, SynchronizeRCU, CallRCU), SRCU and
// SeqCount/SeqLock live here, not with the waiting primitives in nonblock,
// because their rules are lockdep's: each is a lockdep_map taken for
// recursive read by readers (rcu_lock_map, an srcu_struct's dep_map, a
// seqcount's dep_map), so a reader inside its own writer or grace period,
// or a sleeping lock inside an RCU section, is reported by the validator.
//
// # Validators
//
// A Validator holds all graph state; the package default serves ordinary
// use, NewValidator makes private ones (with Limits), krulestest.ResetDefault gives a
// test an empty default graph that is put back at cleanup. Dependencies are
// recorded only between locks of the same validator; locks of another
// validator held meanwhile are skipped by the checks but stay in the held-lock
// list and in reports.
//
// # Switching it off
//
// SetEnabled(false) turns validation off at run time: the locks become plain
// locks costing one atomic load more, and skip their might-sleep check
// too, since it shares validation's lookup of the task record. Building with
// -tags krules_nolockdep compiles validation out (same API, plain locks):
// CONFIG_LOCKDEP=n, whose kernel has no /proc/lockdep, lockdep_chains,
// lockdep_stats or lock_stat, so the views of those fail with
// fs.ErrNotExist and the Handler does not find them, and whose
// debug_show_held_locks and debug_show_all_locks print nothing, so neither
// might_sleep's report nor the hung-task report lists locks. The locks lose
// their might-sleep check with it, where the kernel's CONFIG_LOCKDEP=n keeps
// mutex_lock's might_sleep (that is CONFIG_DEBUG_ATOMIC_SLEEP): a Mutex
// taken in a non-block section is reported only with validation compiled
// in. nonblock.MightSleep itself,
// and the sleeping primitives of package nonblock, still check.
//
// # Views
//
// Validator.WriteClasses, WriteChains and WriteStats print /proc/lockdep,
// /proc/lockdep_chains and /proc/lockdep_stats; WriteDOT exports the class
// graph; Handler serves all four like net/http/pprof under /debug/lockdep/.
package lockclass
