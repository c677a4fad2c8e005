package lockclass

// haveTSC says that rdtsc reads the time-stamp counter.
const haveTSC = true

// rdtsc reads the time-stamp counter (RDTSC, unserialised, as the kernel's
// sched_clock reads it).
func rdtsc() int64
