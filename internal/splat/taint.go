package splat

import (
	"strings"
	"sync/atomic"
)

// Taint is a set of the kernel's taint flags (include/linux/panic.h), one
// bit each, numbered as the kernel numbers them.
type Taint uint32

// The flags a report can set. add_taint callers pick them: a WARN() and
// the scheduler's and might_sleep's BUGs set TAINT_WARN, bad_page and
// SLUB's object checks set TAINT_BAD_PAGE, and the oops a BUG_ON() raises
// sets TAINT_DIE (oops_end). Lockdep's own reports, warn_alloc and the
// hung-task report set none.
const (
	TaintBadPage Taint = 1 << 5 // TAINT_BAD_PAGE, 'B'
	TaintDie     Taint = 1 << 7 // TAINT_DIE, 'D'
	TaintWarn    Taint = 1 << 9 // TAINT_WARN, 'W'
)

// taintFlags is v6.12's taint_flags table (kernel/panic.c), in bit order:
// the letter print_tainted shows for a set flag and its description for
// print_tainted_verbose. An unset flag shows a blank, but an unset 'P' shows
// 'G'.
var taintFlags = [...]struct {
	set  byte
	desc string
}{
	{'P', "PROPRIETARY_MODULE"}, {'F', "FORCED_MODULE"}, {'S', "CPU_OUT_OF_SPEC"},
	{'R', "FORCED_RMMOD"}, {'M', "MACHINE_CHECK"}, {'B', "BAD_PAGE"}, {'U', "USER"},
	{'D', "DIE"}, {'A', "OVERRIDDEN_ACPI_TABLE"}, {'W', "WARN"}, {'C', "CRAP"},
	{'I', "FIRMWARE_WORKAROUND"}, {'O', "OOT_MODULE"}, {'E', "UNSIGNED_MODULE"},
	{'L', "SOFTLOCKUP"}, {'K', "LIVEPATCH"}, {'X', "AUX"}, {'T', "RANDSTRUCT"},
	{'N', "TEST"},
}

// tainted is the kernel's tainted_mask.
var tainted atomic.Uint32

// AddTaint sets the flags of t (add_taint). The kernel taints after it has
// printed the report, so a report's own text shows the taint from before.
func AddTaint(t Taint) { tainted.Or(uint32(t)) }

// Tainted returns the flags set so far (get_taint).
func Tainted() Taint { return Taint(tainted.Load()) }

// ResetTaint clears every flag; tests use it.
func ResetTaint() { tainted.Store(0) }

// PrintTainted is print_tainted(), which SLUB's "BUG kmalloc-64 (Not
// tainted): ..." also prints alone: "Not tainted", or "Tainted: " and one
// column for each of the 19 flags, its letter if set and otherwise a blank
// ('G' for an unset 'P'): "Tainted: G        W         " after a WARN.
func PrintTainted() string {
	t := Tainted()
	if t == 0 {
		return "Not tainted"
	}
	var b strings.Builder
	b.WriteString("Tainted: ")
	for i, f := range taintFlags {
		switch {
		case t&(1<<i) != 0:
			b.WriteByte(f.set)
		case i == 0:
			b.WriteByte('G')
		default:
			b.WriteByte(' ')
		}
	}
	return b.String()
}

// PrintTaintedVerbose is print_tainted_verbose(), the line v6.12's
// dump_stack_print_info adds once the kernel is tainted: the set flags
// spelled out, "Tainted: [B]=BAD_PAGE, [W]=WARN". Untainted, it is "Not
// tainted", which dump_stack does not print.
func PrintTaintedVerbose() string {
	t := Tainted()
	if t == 0 {
		return "Not tainted"
	}
	var b strings.Builder
	b.WriteString("Tainted: ")
	sep := ""
	for i, f := range taintFlags {
		if t&(1<<i) != 0 {
			b.WriteString(sep)
			b.WriteByte('[')
			b.WriteByte(f.set)
			b.WriteString("]=")
			b.WriteString(f.desc)
			sep = ", "
		}
	}
	return b.String()
}
