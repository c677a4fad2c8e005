// Package krules makes goroutines live under the Linux kernel's concurrency
// rules, and reports violations the way the kernel does.
//
// Kernel code has a safety net that user-space ports lose: lockdep proves
// lock-order deadlocks the first time an ordering is seen, might_sleep()
// catches sleeping where it is forbidden, the GFP flags say what an
// allocation may do, and mempools guarantee forward progress. krules gives
// goroutines real primitives that enforce those rules:
//
//   - package nonblock: non-block and atomic sections and the might-sleep
//     checks (non_block_start, preempt_disable, might_sleep, cant_sleep);
//   - package lockclass: lockdep, with mutexes, rw-semaphores, spin locks
//     and rwlocks that block for real;
//   - package gfp: GFP flags, allocation scopes, might_alloc and fs_reclaim,
//     and a page allocator with watermarks, reclaim and fault injection;
//   - package mempool: the kernel's forward-progress pool;
//   - package mmnotifier: address spaces, MMU notifier chains and interval
//     notifiers;
//   - package dmafence: dma-buf's fences with their signalling annotations,
//     and reservation objects (dma_resv) on lockclass's ww_mutex.
//
// # The current goroutine
//
// As in the kernel, the task is implicit: every check applies to the calling
// goroutine, which krules identifies by its goroutine id. Per-goroutine state
// exists only while a goroutine is inside a section, holds a lock, is in an
// allocation scope or is named (SetName), so goroutine churn leaks nothing.
// A goroutine that is none of these costs a few nanoseconds to look up.
//
// # Reports
//
// A broken rule produces a Report: its Kind, the kernel's headline (such as
// "WARNING: possible circular locking dependency detected"), the full text
// laid out as the kernel prints it, the goroutine ("name/id", like comm/pid)
// and its stack. By default the text goes to standard error and the program
// continues, like WARN(). SetPanicOnReport mirrors panic_on_warn, OnReport
// adds a hook, and sleep-in-atomic reports are limited to one a second and
// allocation failures to one every ten seconds as in the kernel, with the
// suppressed ones counted (ReportStats); package gfp
// limits each zone's bad-page reports to a burst of 60 a minute, as
// bad_page does, and the first report after a quiet spell says how many
// were kept quiet.
//
// # Tests
//
// Reports are deterministic: a lock-order inversion is reported the first
// time both orders have been seen, whether or not the deadlock happens.
// Collect returns the reports a function raised instead of printing them;
// Claim is the machinery under it. The test helpers live in package
// krulestest, so that programs linking krules do not link package testing:
// krulestest.Check fails a test on any report, krulestest.Record collects
// the reports a test provokes on purpose, and krulestest.VerifyTestMain adds
// goroutine-leak checking (goleak) and a final check that no report went
// unclaimed:
//
//	func TestMain(m *testing.M) { krulestest.VerifyTestMain(m) }
//
//	func TestDriver(t *testing.T) {
//		krulestest.Check(t)
//		// ... exercise the driver; any report fails the test
//	}
package krules
