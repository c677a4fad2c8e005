package task

import (
	"fmt"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/krules/krules/internal/stack"
)

// Lockdep is the lock validator's per-task state: the kernel's held_locks,
// lockdep_depth (len(Held)), curr_chain_key and lockdep_recursion.
type Lockdep struct {
	// Held is the stack. The slots past its length keep NestLock, Stamp,
	// References and PinCount zero, so that lockclass's quick push need not
	// write them: whatever shortens it clears what it cuts off.
	Held     []HeldLock
	ChainKey uint64
	// Off counts lockdep_off() nesting; while non-zero the validator ignores
	// this goroutine.
	Off int32
}

// HeldCap is the capacity a held-lock stack starts with: 6 entries of 72
// bytes are 432, which the runtime allocates from its 448-byte size class,
// whose objects are 7 whole cache lines, so that two goroutines' stacks,
// written on every lock and unlock, never share a line (false sharing).
// (Larger first stacks would carry the runtime's 8-byte malloc header and
// lose the alignment.)
const HeldCap = 6

func (l *Lockdep) used() int { return len(l.Held) | int(l.Off) }

func (l *Lockdep) reap() {
	clear(l.Held) // the entries keep classes and lock maps alive
	l.Held = l.Held[:0]
	l.Off = 0
	l.ChainKey = 0
}

// HeldLock is one entry of the held-lock stack (struct held_lock). The
// lockclass package owns its meaning; the fields reports need are plain.
type HeldLock struct {
	// Instance identifies the lock map (the lockdep_map's address).
	Instance unsafe.Pointer
	// Class is the validator's class, opaque outside lockclass.
	Class unsafe.Pointer
	// Label returns what reports print for Class:
	// "(name#ver/sub){usage}-{outer:inner}". The validator sets it at
	// acquisition, so the report carries what it needs and the usage
	// characters are computed at print time, as the kernel does, without
	// the hot path copying a string.
	Label func(class unsafe.Pointer) string
	// Site is the PC of the acquisition ("at:").
	Site uintptr

	PrevChainKey uint64
	// Stamp is the start of the hold in lock_stat's clock (lockclass's
	// lockstat_clock), set only while lock_stat is on (holdtime_stamp);
	// zero otherwise.
	Stamp      int64
	NestLock   unsafe.Pointer
	References uint32
	PinCount   int32
	Read       uint8 // 0 write, 1 read, 2 recursive read
	Trylock    bool
	Check      bool
}

// LockdepOff is what lockdep prints in place of a lock list once debug_locks
// is off: debug_show_all_locks (and debug_show_held_locks) print only it.
const LockdepOff = "INFO: lockdep is turned off.\n"

// debugLocksOff is the kernel's !debug_locks: package lockclass sets it when
// its default validator (the one that stands for the kernel's lockdep)
// turns itself off and clears it when that validator is reset. Without
// lockclass nothing can be held, and lockdep counts as on.
var debugLocksOff atomic.Bool

// SetDebugLocks records the default validator's debug_locks.
func SetDebugLocks(on bool) { debugLocksOff.Store(!on) }

// DebugLocks reports the kernel's debug_locks: false once the default
// validator has turned itself off (debug_locks_off). lockdep_off() and
// the prove_locking switch leave it alone, as in the kernel.
func DebugLocks() bool { return !debugLocksOff.Load() }

// LabelOf returns what reports print for h's class.
func LabelOf(h *HeldLock) string {
	if h.Label == nil || h.Class == nil {
		return "(?)"
	}
	return h.Label(h.Class)
}

// FormatHeldLock writes one held-lock line as lockdep prints it:
// "000000c000123450 (&dev->lock){+.+.}-{3:3}, at: pkg.Func+0x1c file.go:12".
func FormatHeldLock(b *strings.Builder, h *HeldLock) {
	fmt.Fprintf(b, "%016x %s, at: %s", uintptr(h.Instance), LabelOf(h), stack.FormatPC(h.Site))
}

// FormatHeldLocks writes the held-lock list of t the way
// lockdep_print_held_locks does; who is "name/goid".
func FormatHeldLocks(b *strings.Builder, t *Task, who string) {
	var held []HeldLock
	if t != nil {
		held = t.Lockdep.Held
	}
	switch len(held) {
	case 0:
		fmt.Fprintf(b, "no locks held by %s.\n", who)
		return
	case 1:
		fmt.Fprintf(b, "1 lock held by %s:\n", who)
	default:
		fmt.Fprintf(b, "%d locks held by %s:\n", len(held), who)
	}
	for i := range held {
		fmt.Fprintf(b, " #%d: ", i)
		FormatHeldLock(b, &held[i])
		b.WriteByte('\n')
	}
}
