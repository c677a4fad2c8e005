// Package nonblock mirrors the kernel's sleep-in-atomic checking for
// goroutines.
//
// A non-block section (Start/End, the kernel's non_block_start() and
// non_block_end()) marks code that must not sleep even though nothing stops it
// from being preempted: the kernel uses it around MMU-notifier callbacks
// called by the OOM reaper. An atomic section (StartAtomic/EndAtomic, the
// kernel's preempt_disable() and preempt_enable()) marks code that runs with
// preemption off; spin locks enter one while held.
//
// Every primitive that may block calls MightSleep first (the kernel's
// might_sleep()). Inside either kind of section that produces the kernel's
// report, deterministically, at the call, whether or not it would really have
// blocked this time:
//
//	BUG: sleeping function called from invalid context at drv/notifier.go:42
//	in_atomic(): 0, irqs_disabled(): 0, non_block: 1, pid: 17, name: oom_reaper
//	preempt_count: 0, expected: 0
//	no locks held by oom_reaper/17.
//	CPU: - UID: 0 PID: 17 Comm: oom_reaper Tainted: G        W          krules go1.26.8
//	Tainted: [W]=WARN
//	Call Trace:
//	 <TASK>
//	 ...
//	 </TASK>
//
// Sections nest and belong to the goroutine that entered them. Outside every
// section MightSleep costs a few nanoseconds and allocates nothing.
//
// MightSleep only sees the primitives that call it. The kernel also checks in
// schedule() itself, so that blocking nobody announced is caught too. Its Go
// counterpart is the trace checker (TraceCheck in tests, StartTraceCheck
// elsewhere): sections mark themselves as runtime/trace regions, and the
// checker reads the execution trace for goroutines that really blocked inside
// one (a channel operation, select, sync.Mutex, sync.Cond, time.Sleep,
// network I/O, a system call that blocked) and reports each as the kernel
// does:
//
//	BUG: scheduling in a non-blocking section: oom_reaper/17/1
//	blocked on: chan receive
//	Non-block section entered at:
//	drv.(*Notifier).Invalidate+0x3c drv/notifier.go:40
//	CPU: - UID: 0 PID: 17 Comm: oom_reaper Tainted: G        W          krules go1.26.8
//	Tainted: [W]=WARN
//	Call Trace:
//	 <TASK>
//	 runtime.chanrecv1+0x11 runtime/chan.go:509
//	 drv.(*Notifier).Invalidate+0x5c drv/notifier.go:42
//	 ...
//	 </TASK>
//
// # Waiting primitives
//
// The kernel's waiting primitives that lockdep does not track live here
// rather than in lockclass, because their only rule is might_sleep:
// Semaphore (struct semaphore: v6.12 gives it no lockdep map), Completion
// (struct completion: its crossrelease annotations were removed in 4.15) and
// WaitQueue (wait_queue_head_t). Their sleeping calls report inside a
// section; their waking calls (Up, Complete, WakeUp) are allowed anywhere.
package nonblock
