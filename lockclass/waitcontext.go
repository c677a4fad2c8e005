package lockclass

import (
	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
)

// Wait-context checking (kernel/locking/lockdep.c check_wait_context): every
// class has an inner wait type, what holding it allows inside ("presents
// this context"), and an outer one, the context it needs to be taken in.
// Taking a lock whose outer type is above the smallest inner type of the
// locks held is "[ BUG: Invalid wait context ]": a mutex (it sleeps) inside
// a spinlock_t (it does not), or, with PROVE_RAW_LOCK_NESTING, a spinlock_t
// (a sleeping lock on PREEMPT_RT) inside a raw_spinlock_t.
//
// The check compares its own copy of the types, waitCtx, in the enum's
// PROVE_RAW_LOCK_NESTING numbering where LD_WAIT_CONFIG stands apart from
// LD_WAIT_SPIN, so that the option can be a validator's choice at run time
// whatever numbering the {outer:inner} braces print; without the option
// CONFIG folds onto SPIN before comparing, as the kernel's enum does.

// waitFree is LD_WAIT_FREE (RCU), in the printed numbering: it is 1 in both.
const waitFree = 1

// The check's wait types: enum lockdep_wait_type with
// CONFIG_PROVE_RAW_LOCK_NESTING (include/linux/lockdep_types.h).
const (
	ldWaitInv    = 0 // not checked
	ldWaitFree   = 1 // RCU and the like
	ldWaitSpin   = 2 // raw_spinlock_t
	ldWaitConfig = 3 // spinlock_t, rwlock_t: sleeping locks on PREEMPT_RT
	ldWaitSleep  = 4 // mutex, rw_semaphore
	ldWaitMax    = 5 // the process context a task starts in
)

// waitCtx is a class's (inner, outer) pair for the check; outer 0 means
// "as inner" (lockdep_init_map_waits callers that pass LD_WAIT_INV).
type waitCtx struct{ inner, outer uint8 }

// waitContext sets the types the check compares, for a lock the printed
// types cannot tell apart (raw_spinlock_t from spinlock_t).
func waitContext(inner, outer uint8) Option {
	return func(c *mapConfig) { c.wait = waitCtx{inner, outer} }
}

// waitCtx returns the types the check compares: those set by waitContext,
// else the ones the printed types imply (a sleeping lock, or a spinning one
// that is not raw).
func (cfg *mapConfig) waitCtx() waitCtx {
	if cfg.wait.inner != ldWaitInv {
		return cfg.wait
	}
	conv := func(w uint8) uint8 {
		switch w {
		case ldWaitInv:
			return ldWaitInv
		case waitFree:
			return ldWaitFree
		case waitSleep:
			return ldWaitSleep
		}
		return ldWaitConfig
	}
	return waitCtx{conv(cfg.inner), conv(cfg.outer)}
}

// ProveRawLockNesting makes the validator tell raw_spinlock_t from
// spinlock_t (CONFIG_PROVE_RAW_LOCK_NESTING, off by default in v6.12): a
// SpinLock or RWLock taken inside a RawSpinLock is then an invalid wait
// context, as it is on PREEMPT_RT where spinlock_t sleeps.
func ProveRawLockNesting() ValidatorOption { return func(v *Validator) { v.rawNest = true } }

// waitNum converts a check type to the enum value the kernel's build uses:
// without PROVE_RAW_LOCK_NESTING LD_WAIT_CONFIG is LD_WAIT_SPIN and the
// types above it move down by one.
func waitNum(w uint8, rawNest bool) uint8 {
	if rawNest || w < ldWaitConfig {
		return w
	}
	return w - 1
}

// checkWaitContext is check_wait_context for next, about to be pushed on
// t's held locks. Goroutines have a single context (process context, no
// interrupts), so every held lock counts and the task's own wait context
// is LD_WAIT_MAX. The verdict depends only on the held classes and next's,
// so for a checked acquisition it runs with the chain's other checks, once
// per new chain; locked says that g.mu is held.
func (g *graph) checkWaitContext(t *task.Task, next *task.HeldLock, locked bool) *krules.Report {
	held := t.Lockdep.Held
	nc := (*class)(next.Class)
	if len(held) == 0 || nc.wait.inner == ldWaitInv || next.Trylock {
		return nil
	}
	outer := nc.wait.outer
	if outer == ldWaitInv {
		outer = nc.wait.inner
	}
	curr := uint8(ldWaitMax)
	for i := range held {
		// held[i].Class may be another validator's: its types are as good.
		if in := (*class)(held[i].Class).wait.inner; in != ldWaitInv {
			curr = min(curr, in)
		}
	}
	raw := g.v.rawNest
	if waitNum(outer, raw) <= waitNum(curr, raw) {
		return nil
	}
	if !g.reportable(locked) {
		return nil
	}
	return invalidWaitContextReport(next, waitNum(ldWaitMax, raw))
}

// invalidWaitContextReport is print_lock_invalid_wait_context; the context
// line prints the task's wait context (task_wait_context), LD_WAIT_MAX.
func invalidWaitContextReport(next *task.HeldLock, ctx uint8) *krules.Report {
	b := newReport(krules.InvalidWaitContext, "[ BUG: Invalid wait context ]")
	b.Header()
	b.Printf("%s is trying to lock:\n", b.Who())
	b.WriteString(heldLine(next))
	b.Printf("other info that might help us debug this:\n")
	b.Printf("context-{%d:%d}\n", ctx, ctx)
	b.HeldLocks()
	b.Backtrace()
	return b.Report()
}
