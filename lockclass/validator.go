package lockclass

import (
	"sync/atomic"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/task"
)

// Validator holds the whole state of lock validation: classes, the
// dependency graph, the chain cache, the limits and the debug_locks switch.
// The package default serves every lock that does not name another one
// (WithValidator). Tests make private validators, or start from an empty
// default with krulestest.ResetDefault.
//
// Locks of different validators may be held at once: each validator checks
// its own locks against each other and ignores the rest (they stay in the
// held-lock list and in reports).
type Validator struct {
	lim       Limits
	keepGoing bool
	rawNest   bool // ProveRawLockNesting
	g         atomic.Pointer[graph]
}

// Limits are the validator's static sizes (the kernel's MAX_LOCKDEP_*).
// Exhausting one prints "BUG: MAX_… too low!" and turns validation off; the
// locks keep working.
type Limits struct {
	Classes     int // MAX_LOCKDEP_KEYS, 8192
	Entries     int // MAX_LOCKDEP_ENTRIES, 32768 (two per dependency)
	Chains      int // MAX_LOCKDEP_CHAINS, 65536
	ChainHlocks int // MAX_LOCKDEP_CHAIN_HLOCKS, 5 × Chains
	StackTrace  int // MAX_STACK_TRACE_ENTRIES, 524288 words
	BFSQueue    int // the circular queue of the cycle search, 4096
}

// DefaultLimits are the kernel's x86 defaults.
var DefaultLimits = Limits{
	Classes: 8192, Entries: 32768, Chains: 65536, ChainHlocks: 5 * 65536,
	StackTrace: 1 << 19, BFSQueue: 4096,
}

// MaxLockDepth is MAX_LOCK_DEPTH: a goroutine holding this many locks at
// once trips "BUG: MAX_LOCK_DEPTH too low!".
const MaxLockDepth = 48

// ValidatorOption configures NewValidator.
type ValidatorOption func(*Validator)

// WithLimits sets the validator's limits; zero fields keep the defaults.
func WithLimits(l Limits) ValidatorOption {
	return func(v *Validator) {
		set := func(dst *int, src int) {
			if src > 0 {
				*dst = src
			}
		}
		set(&v.lim.Classes, l.Classes)
		set(&v.lim.Entries, l.Entries)
		set(&v.lim.Chains, l.Chains)
		if l.Chains > 0 && l.ChainHlocks == 0 {
			v.lim.ChainHlocks = 5 * l.Chains
		}
		set(&v.lim.ChainHlocks, l.ChainHlocks)
		set(&v.lim.StackTrace, l.StackTrace)
		set(&v.lim.BFSQueue, l.BFSQueue)
	}
}

// KeepGoing keeps validating after a report instead of turning validation
// off (the kernel always turns it off: debug_locks_off). Exhausted limits
// still turn it off.
func KeepGoing() ValidatorOption { return func(v *Validator) { v.keepGoing = true } }

// NewValidator returns an empty validator with validation on.
func NewValidator(opts ...ValidatorOption) *Validator {
	v := &Validator{lim: DefaultLimits}
	for _, o := range opts {
		o(v)
	}
	v.g.Store(newGraph(v))
	trackValidator(v)
	return v
}

var defaultValidator = NewValidator()

// Default returns the package's default validator.
func Default() *Validator { return defaultValidator }

func (v *Validator) graph() *graph { return v.g.Load() }

// Enabled reports whether the validator still validates: false after a
// report (the kernel's debug_locks == 0) or an exhausted limit.
func (v *Validator) Enabled() bool { return v.graph().enabled.Load() }

// Disable turns validation off as a report does (debug_locks_off) and
// reports whether this call turned it off. Code outside lockdep calls it
// where the kernel's add_taint is passed LOCKDEP_NOW_UNRELIABLE (bad_page,
// SLUB's object checks): from then on held locks are no longer trusted.
// Reset turns validation back on.
func (v *Validator) Disable() bool { return v.graph().off() }

// TaintNowUnreliable is what add_taint does when passed
// LOCKDEP_NOW_UNRELIABLE (kernel/panic.c), as bad_page, SLUB's object
// checks and the oops of a BUG_ON (oops_end) pass it: the validator's state
// may be corrupt, so the default validator, the kernel's only one, goes off
// (__debug_locks_off), with "Disabling lock debugging due to kernel taint"
// if this call turned it off. The caller has emitted its report, which
// carries the taint flag.
func TaintNowUnreliable() {
	if Default().Disable() {
		krules.Logf("Disabling lock debugging due to kernel taint")
	}
}

// Reset empties the validator (lockdep_reset plus zapping every class):
// no classes, dependencies or chains, and validation on. Locks keep working;
// their next acquisition registers fresh classes. As lockdep_reset's
// lockdep_init_task(current) does, the calling goroutine then holds none of
// v's locks as far as validation knows, and is out of any Off: releasing a
// lock of v it held across the reset is a bad unlock balance. Its locks of
// other validators stay on its list, and other goroutines' locks held across
// a reset are released quietly (lockdep_reset touches only current).
func (v *Validator) Reset() {
	v.swap(newGraph(v))
	if compiledIn {
		forgetHeld(v)
	}
}

// forgetHeld is lockdep_init_task(current) for validator v: the calling
// goroutine's entries of v's classes go (with their lock_stat stamps
// unrecorded, as lockdep_reset's memset drops them), the others are
// re-acquired on an empty stack (reacquire_held_locks) for their chain keys,
// and lockdep_recursion, Off, is zeroed.
func forgetHeld(v *Validator) {
	t := task.Lookup()
	if t == nil {
		return
	}
	var keep []task.HeldLock
	for _, h := range t.Lockdep.Held {
		if c := (*class)(h.Class); c == nil || c.g.v != v {
			keep = append(keep, h)
		}
	}
	t.Lockdep.Off = 0
	t.Lockdep.ChainKey = 0
	truncateHeld(t, 0)
	reps := rebuild(t, keep)
	if len(t.Lockdep.Held) == 0 {
		t.ReleaseIfEmpty()
	}
	emitAll(reps)
}

func (v *Validator) swap(n *graph) *graph {
	old := v.g.Swap(n)
	old.retire()
	n.revive()
	n.publishDebugLocks()
	return old
}

// ResetWithRestore empties the validator, as Reset does, and returns a
// function that puts back what it held before; krulestest.ResetDefault
// brackets a test with it. Unlike Reset it leaves the calling goroutine's
// held locks and Off alone, so that the restore puts everything back: it is
// a test's bracket, not lockdep_reset.
func (v *Validator) ResetWithRestore() (restore func()) {
	old := v.swap(newGraph(v))
	return func() { v.swap(old) }
}

// SetEnabled switches validation on or off for the whole process at run time
// (the kernel's prove_locking sysctl) and returns the previous setting.
// While it is off the locks are plain locks: no validation, no held-lock
// tracking and no might-sleep checks, at the cost of one atomic load. Locks
// acquired while it was on are still released properly.
func SetEnabled(on bool) (previous bool) {
	return enabled.Swap(on)
}

var enabled switchWord

func init() { enabled.Store(compiledIn) }

// switchWord is a process-wide switch (enabled, lockStat): a plain word
// read with the atomic functions rather than an atomic.Bool, so that
// Mutex.Unlock folds it into one test with its owner word, and so that the
// inlined Mutex.Lock and Unlock fit the inliner's budget, which prices the
// atomic types' methods higher.
type switchWord struct{ on uint32 }

func (s *switchWord) Load() bool { return atomic.LoadUint32(&s.on) != 0 }

func (s *switchWord) Store(on bool) { atomic.StoreUint32(&s.on, b32(on)) }

func (s *switchWord) Swap(on bool) bool { return atomic.SwapUint32(&s.on, b32(on)) != 0 }

func b32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// IsEnabled reports whether validation is switched on (SetEnabled) and
// compiled in.
func IsEnabled() bool { return compiledIn && enabled.Load() }
