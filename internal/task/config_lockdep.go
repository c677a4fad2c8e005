//go:build !krules_nolockdep

package task

// ConfigLockdep is the kernel's CONFIG_LOCKDEP: true unless built with
// -tags krules_nolockdep. Without it debug_show_held_locks and
// debug_show_all_locks are empty inlines (include/linux/debug_locks.h), so
// the reports of the packages outside lockclass print no held-lock list.
const ConfigLockdep = true
