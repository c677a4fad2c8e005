//go:build krules_nolockdep

package task

// ConfigLockdep is the kernel's CONFIG_LOCKDEP: false in this build
// (-tags krules_nolockdep), where debug_show_held_locks and
// debug_show_all_locks are empty inlines (include/linux/debug_locks.h): the
// reports of the packages outside lockclass print no held-lock list.
const ConfigLockdep = false
