package lockclass

// PrimeKey names one priming of the validator: a set of orderings that
// kernel code teaches lockdep up front, with nothing held, so that a later
// inversion is reported the first time one side of it runs. The kernel
// primes in init code, once per boot: __mmu_notifier_register (v5.4–v5.10)
// and might_alloc take fs_reclaim and, inside it, the MMU-notifier map;
// dma_resv_lockdep (drivers/dma-buf/dma-resv.c) orders mmap_lock before
// reservation_ww_class_mutex before fs_reclaim. A validator forgets them
// when it is reset, so krules primes once per validator generation instead:
// see PrimeOnce. Declare a PrimeKey as a package-level variable; like Key its
// identity is its address, and it must not be copied.
type PrimeKey struct {
	_ noCopy
	// A byte, because distinct zero-size variables may share an address,
	// and then two primings would count as one.
	_ byte
}

// PrimeOnce runs fn the first time it is called with key for v's current
// generation: after NewValidator, Reset or ResetDefault, the next call runs
// fn again; every other call returns at once (a sync.Map lookup, no lock). A
// concurrent call for the same key waits until fn has run, so no caller
// proceeds without the orderings.
//
// fn runs on a goroutine of its own, holding no lock, and PrimeOnce waits
// for it: the priming records only its own orderings, whatever the caller
// holds (the kernel primes from init code). fn must release everything it
// takes, must not take a lock the caller holds (it would really deadlock),
// and must not call PrimeOnce with the same key. Typically it acquires and
// releases lock maps (Map.Acquire/Release) and fresh locks, or calls
// MightLock, in the order the kernel would. The first call blocks for a
// goroutine's start and exit, so call it where sleeping is allowed.
func (v *Validator) PrimeOnce(key *PrimeKey, fn func()) {
	if !compiledIn || !enabled.Load() {
		return
	}
	g := v.graph()
	if ch, ok := g.primed.Load(key); ok {
		<-ch.(chan struct{})
		return
	}
	ch := make(chan struct{})
	if other, loaded := g.primed.LoadOrStore(key, ch); loaded {
		<-other.(chan struct{})
		return
	}
	go func() {
		defer close(ch)
		fn()
	}()
	<-ch
}
