package lockclass

import (
	"os"
	"strings"
	"sync"
	_ "unsafe" // go:linkname
)

// lock_stat's clock is the kernel's lockstat_clock (local_clock, the
// scheduler clock in kernel/sched/clock.c): on x86 it reads the TSC and
// scales it, with no system call and no vDSO page. Two readings per lock
// pair are the whole price of lock_stat on an uncontended lock, so krules
// does the same where the kernel trusts the TSC (its clocksource is "tsc",
// so the counter is invariant and synchronised across CPUs): one RDTSC costs
// 11.6 ns on an AMD EPYC (Zen 3, KVM), runtime.nanotime through the vDSO
// 30 ns. Elsewhere it is runtime.nanotime.
//
// Stamps are in the clock's units; statNanos turns a difference of two into
// nanoseconds, with the ticks-per-nanosecond ratio calibrated against
// runtime.nanotime once, when lock_stat is first switched on.

//go:linkname nanotime runtime.nanotime
func nanotime() int64

// statClockState is the calibration: set once, before the first stamp.
type statClockState struct {
	once      sync.Once
	tsc       bool    // stamps are TSC ticks
	nsPerTick float64 // their length in nanoseconds
}

var statClk statClockState

// statClockInit calibrates the clock if that has not been done.
func statClockInit() { statClk.once.Do(statClk.calibrate) }

func (s *statClockState) calibrate() {
	if !haveTSC || !kernelTrustsTSC() {
		return
	}
	// 2 ms against nanotime: its jitter of a few tens of nanoseconds at each
	// end makes the ratio good to about 1e-5.
	n0, t0 := nanotime(), rdtsc()
	for nanotime()-n0 < 2e6 {
	}
	n1, t1 := nanotime(), rdtsc()
	if t1 <= t0 {
		return
	}
	s.nsPerTick, s.tsc = float64(n1-n0)/float64(t1-t0), true
}

// kernelTrustsTSC reports whether the kernel's clocksource is the TSC.
func kernelTrustsTSC() bool {
	b, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
	return err == nil && strings.TrimSpace(string(b)) == "tsc"
}

// statNow is lockstat_clock: a stamp, never 0 (0 means "not stamped").
func statNow() int64 {
	if statClk.tsc {
		return rdtsc() | 1
	}
	return nanotime() | 1
}

// statNanos is the length of d, a difference of two stamps, in nanoseconds.
func statNanos(d int64) int64 {
	if statClk.tsc {
		return int64(float64(d) * statClk.nsPerTick)
	}
	return d
}
