package task

import (
	"fmt"
	"strings"
	"unsafe"

	"github.com/krules/krules/internal/stack"
)

// Lockdep is the lock validator's per-task state: the kernel's held_locks,
// lockdep_depth (len(Held)), curr_chain_key and lockdep_recursion.
type Lockdep struct {
	Held     []HeldLock
	ChainKey uint64
	// Off counts lockdep_off() nesting; while non-zero the validator ignores
	// this goroutine.
	Off int32
}

// HeldLock is one entry of the held-lock stack (struct held_lock). The
// lockclass package owns its meaning; the fields reports need are plain.
type HeldLock struct {
	// Instance identifies the lock map (the lockdep_map's address).
	Instance unsafe.Pointer
	// Class is the validator's class, opaque outside lockclass.
	Class unsafe.Pointer
	// Site is the PC of the acquisition ("at:").
	Site uintptr

	PrevChainKey uint64
	NestLock     unsafe.Pointer
	References   uint32
	PinCount     int32
	Read         uint8 // 0 write, 1 read, 2 recursive read
	Trylock      bool
	Check        bool

	// Label, when set, is what reports print for the class:
	// "(name#ver/sub){usage}-{outer:inner}". The validator leaves it empty
	// and lets ClassLabel compute it at print time, as the kernel does, so
	// the usage characters are current and the hot path copies no string.
	Label string
}

// ClassLabel returns the label of an opaque class for HeldLock entries
// whose Label is empty. The lockclass package installs it at start-up.
var ClassLabel func(class unsafe.Pointer) string

// LabelOf returns what reports print for h's class.
func LabelOf(h *HeldLock) string {
	if h.Label != "" || ClassLabel == nil || h.Class == nil {
		return h.Label
	}
	return ClassLabel(h.Class)
}

// Claim returns the record of goroutine id, which must be the caller,
// creating it if needed: Current in one walk of the bucket. The lock
// validator calls it on every acquisition, so the common cases (the record
// at the head of its bucket, or the head an idle slot alone in its bucket)
// are decided inline.
func Claim(id int64) *Task {
	b := bucketFor(id)
	t := b.head.Load()
	if t != nil && t.next.Load() == nil {
		// A bucket of one node, the common case: ours, or idle and so
		// free for us since nobody else can hold our id.
		switch t.id.Load() {
		case id:
			return t
		case 0:
			if t.id.CompareAndSwap(0, id) {
				t.ID = id
				return t
			}
		}
	}
	return claimSlow(id)
}

func claimSlow(id int64) *Task {
	b := bucketFor(id)
	var idle *Task
	for t := b.head.Load(); t != nil; t = t.next.Load() {
		switch t.id.Load() {
		case id:
			return t
		case 0:
			if idle == nil {
				idle = t
			}
		}
	}
	if idle != nil && idle.id.CompareAndSwap(0, id) {
		idle.ID = id
		return idle
	}
	return insert(id)
}

// FormatHeldLock writes one held-lock line as lockdep prints it:
// "000000c000123450 (&dev->lock){+.+.}-{4:4}, at: pkg.Func+0x1c file.go:12".
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
