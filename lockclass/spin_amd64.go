package lockclass

// procyield executes n PAUSE instructions (n > 0): the kernel's cpu_relax
// on x86, n times, as the runtime's procyield. PAUSE tells the core that
// this is a spin-wait: it yields the pipeline to the sibling thread and
// avoids the memory-order flush on leaving the loop.
func procyield(n uint32)
