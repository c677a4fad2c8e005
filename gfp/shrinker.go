package gfp

import (
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// Shrinker values (include/linux/shrinker.h).
const (
	// ShrinkStop is SHRINK_STOP: Scan's answer when it cannot make progress
	// in this context (typically GFP_NOFS reaching a filesystem cache); it
	// ends the scan of this shrinker for this reclaim pass.
	ShrinkStop = ^uint64(0)
	// ShrinkEmpty is SHRINK_EMPTY: Count's answer when there is nothing at
	// all to free.
	ShrinkEmpty = ^uint64(0) - 1
	// DefaultSeeks is DEFAULT_SEEKS: the cost of recreating an object.
	DefaultSeeks = 2
	// ShrinkBatch is SHRINK_BATCH: the scan batch when Batch is 0.
	ShrinkBatch = 128
	// DefPriority is DEF_PRIORITY: reclaim starts at 1/4096 of each cache
	// and halves the divisor each round down to priority 0.
	DefPriority = 12
	// SwapClusterMax is SWAP_CLUSTER_MAX: the pages one direct-reclaim
	// call tries to free.
	SwapClusterMax = 32
)

// ShrinkControl is struct shrink_control: what a shrinker is asked.
type ShrinkControl struct {
	// GFP is the mask of the allocation being satisfied; a shrinker whose
	// work needs FS must return ShrinkStop when FS is clear.
	GFP Flags
	// NrToScan is how many objects Scan should look at.
	NrToScan uint64
	// NrScanned defaults to NrToScan; Scan may set it to what it really
	// looked at.
	NrScanned uint64
}

// Shrinker is a cache that gives memory back under pressure (struct
// shrinker). Reclaim (direct reclaim and kswapd) calls Count and then Scan
// while it holds the fs_reclaim lock map, in a NoReclaim (PF_MEMALLOC)
// scope: every lock they take is ordered after fs_reclaim, so a lock that is
// also held around a GFP_KERNEL allocation is reported as a circular
// dependency the first time both have happened, memory pressure or not.
//
// Count and Scan may run concurrently, from several goroutines.
type Shrinker struct {
	// Name identifies the shrinker in statistics.
	Name string
	// Count returns the number of freeable objects, 0 when unknown or to
	// be skipped this time, or ShrinkEmpty (count_objects).
	Count func(sc *ShrinkControl) uint64
	// Scan frees up to sc.NrToScan objects and returns how many it freed,
	// or ShrinkStop (scan_objects).
	Scan func(sc *ShrinkControl) uint64
	// Seeks is the cost of recreating an object (DefaultSeeks is typical);
	// 0 means "trim hard", as in the kernel, whose shrinkers start zeroed.
	Seeks int
	// Batch is the scan batch; 0 means ShrinkBatch.
	Batch int

	zone     *Zone
	deferred atomic.Int64 // nr_deferred
	freeable atomic.Int64 // the last Count, for reclaimablePages
	refs     atomic.Int64 // 0 once unregistered
	done     chan struct{}
}

type reclaimState struct {
	mu        sync.Mutex // serialises (un)registration
	shrinkers atomic.Pointer[[]*Shrinker]
}

func (r *reclaimState) init() { r.shrinkers.Store(new([]*Shrinker)) }

// RegisterShrinker adds s to the zone's shrinkers (shrinker_register).
func (z *Zone) RegisterShrinker(s *Shrinker) error {
	if s.Count == nil || s.Scan == nil {
		return errors.New("gfp: shrinker needs Count and Scan")
	}
	z.reclaim.mu.Lock()
	defer z.reclaim.mu.Unlock()
	if s.zone != nil {
		return errors.New("gfp: shrinker " + s.Name + " is already registered")
	}
	s.zone = z
	s.done = make(chan struct{})
	s.refs.Store(1)
	list := append(slices.Clone(*z.reclaim.shrinkers.Load()), s)
	z.reclaim.shrinkers.Store(&list)
	return nil
}

// UnregisterShrinker removes s and waits until no reclaim is running it
// (shrinker_free). It must not be called from s's own callbacks.
func (z *Zone) UnregisterShrinker(s *Shrinker) {
	z.reclaim.mu.Lock()
	if s.zone != z {
		z.reclaim.mu.Unlock()
		return
	}
	list := slices.DeleteFunc(slices.Clone(*z.reclaim.shrinkers.Load()), func(x *Shrinker) bool { return x == s })
	z.reclaim.shrinkers.Store(&list)
	z.reclaim.mu.Unlock()
	s.put()
	<-s.done
	s.zone = nil
}

// get takes a reference unless the shrinker is being unregistered
// (shrinker_try_get).
func (s *Shrinker) get() bool {
	for {
		n := s.refs.Load()
		if n == 0 {
			return false
		}
		if s.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (s *Shrinker) put() {
	if s.refs.Add(-1) == 0 {
		close(s.done)
	}
}

// shrinkSlab is shrink_slab: every shrinker once at the given priority. It
// returns the objects freed and scanned.
func (z *Zone) shrinkSlab(gfp Flags, priority int) (freed, scanned uint64) {
	for _, s := range *z.reclaim.shrinkers.Load() {
		if !s.get() {
			continue
		}
		f, sc := s.shrink(gfp, priority)
		s.put()
		freed += f
		scanned += sc
	}
	z.stats.slabsScanned.Add(int64(scanned))
	return freed, scanned
}

// shrink is do_shrink_slab.
func (s *Shrinker) shrink(gfp Flags, priority int) (freed, scanned uint64) {
	sc := ShrinkControl{GFP: gfp}
	freeable := s.Count(&sc)
	if freeable == 0 || freeable == ShrinkEmpty {
		s.freeable.Store(0)
		return 0, 0
	}
	s.freeable.Store(int64(min(freeable, 1<<62)))
	nr := s.deferred.Swap(0)
	var delta int64
	if s.Seeks > 0 {
		delta = int64(freeable>>priority) * 4 / int64(s.Seeks)
	} else {
		delta = int64(freeable / 2)
	}
	limit := 2 * int64(min(freeable, 1<<61))
	total := min(nr>>priority+delta, limit)
	batch := int64(s.Batch)
	if batch <= 0 {
		batch = ShrinkBatch
	}
	var scannedN int64
	for total >= batch || total >= int64(freeable) {
		n := min(batch, total)
		sc.NrToScan, sc.NrScanned = uint64(n), uint64(n)
		ret := s.Scan(&sc)
		if ret == ShrinkStop {
			break
		}
		freed += ret
		total -= int64(sc.NrScanned)
		scannedN += int64(sc.NrScanned)
		runtime.Gosched() // cond_resched
	}
	next := min(max(nr+delta-scannedN, 0), limit)
	s.deferred.Add(next)
	return freed, uint64(scannedN)
}

// Deferred returns the scan work carried over to the next reclaim pass
// (nr_deferred).
func (s *Shrinker) Deferred() int64 { return s.deferred.Load() }
