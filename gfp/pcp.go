package gfp

import (
	"math/bits"
	"sync"

	"github.com/krules/krules/internal/task"
)

// The per-CPU page lists (struct per_cpu_pages). Goroutines have no CPU, so
// the zone keeps a small power-of-two number of shards and a goroutine uses
// the one its id hashes to, moving to another if that one is busy. Each
// shard caches blocks of order 0 to CostlyOrder, refilled from and drained
// to the buddy lists in batches under the zone lock, so that an allocation
// that hits its shard's cache takes one uncontended lock and nothing else.
// Pages on these lists are not free pages to the watermarks, as in the
// kernel. Each shard also caches kmalloc objects (magazines) and counts its
// own events, like the kernel's per-CPU vm_event counters.

const pcpOrders = CostlyOrder + 1

type shard struct {
	mu    sync.Mutex
	count int // pages cached on lists
	lists [pcpOrders][]int32
	mags  [nClasses]magazine
	ev    shardEvents
	_     [64]byte // keep shards on separate cache lines
}

// shardEvents are the counters bumped on the fast paths, under the shard
// lock.
type shardEvents struct {
	pgalloc   int64
	pgfree    int64
	allocs    [pcpOrders]int64
	kmallocs  int64
	kfrees    int64
	pcpRefill int64
	pcpDrain  int64
}

// setupShards sizes the lists as zone_batchsize and zone_highsize do:
// batch from the zone's size (at most 63), high the low watermark split
// across the shards but at least four batches.
func (z *Zone) setupShards(n int) {
	n = min(max(n, 1), 256)
	n = 1 << bits.Len(uint(n-1))
	z.shards = make([]shard, n)
	z.shardShift = uint(64 - bits.Len(uint(n-1)))
	batch := min(int64(len(z.pages))>>10, (1<<20)/PageSize) / 4
	if batch < 1 {
		batch = 1
	}
	batch = int64(1)<<(bits.Len64(uint64(batch+batch/2))-1) - 1
	if batch < 1 {
		batch = 1
	}
	z.pcpBatch = int(batch)
	z.pcpHigh = int(max(z.wmark[wmarkLow].Load()/int64(n), 4*batch))
	for i := range z.shards {
		for o := range z.shards[i].lists {
			z.shards[i].lists[o] = make([]int32, 0, z.pcpHigh>>o+z.pcpBatch+2)
		}
		for c := range z.shards[i].mags {
			z.shards[i].mags[c].init()
		}
	}
}

// hintSlots is the size of the table that remembers where goroutines that
// collided went.
const hintSlots = 64

// lockShard locks and returns the calling goroutine's shard: the one its id
// hashes to, unless it found that one busy before and moved (the hint
// table remembers where, so two busy goroutines that hash alike separate
// after their first collision instead of sharing a shard's cache lines),
// or else the first idle one after it.
func (z *Zone) lockShard() *shard {
	id := uint64(task.ID())
	slot := &z.hints[id%hintSlots]
	h := id * 0x9e3779b97f4a7c15 >> z.shardShift
	if v := slot.Load(); v>>8 == id {
		h = v & 0xff
	}
	s := &z.shards[h]
	if s.mu.TryLock() {
		return s
	}
	mask := uint64(len(z.shards) - 1)
	for i := uint64(1); i <= mask; i++ {
		o := (h + i) & mask
		if z.shards[o].mu.TryLock() {
			slot.Store(id<<8 | o)
			return &z.shards[o]
		}
	}
	s.mu.Lock()
	return s
}

// pcpRefill moves up to n blocks of the given order from the buddy lists to
// s (rmqueue_bulk). The caller holds s.mu.
func (z *Zone) pcpRefill(s *shard, order, n int) {
	l := s.lists[order]
	z.mu.Lock()
	got := 0
	for ; got < n; got++ {
		idx := z.rmqueueSmallest(order)
		if idx == none {
			break
		}
		z.pages[idx].state.Store(pageState(pgPCP, order))
		l = append(l, idx)
	}
	z.nrFree.Add(-int64(got) << order)
	z.mu.Unlock()
	s.lists[order] = l
	s.count += got << order
	s.ev.pcpRefill++
}

// pcpDrain returns up to n blocks of the given order from s to the buddy
// lists (free_pcppages_bulk), oldest first. The caller holds s.mu.
func (z *Zone) pcpDrain(s *shard, order, n int) {
	l := s.lists[order]
	n = min(n, len(l))
	if n == 0 {
		return
	}
	z.mu.Lock()
	for _, idx := range l[:n] {
		z.freeOne(idx, order)
	}
	z.nrFree.Add(int64(n) << order)
	z.mu.Unlock()
	s.lists[order] = l[:copy(l, l[n:])]
	s.count -= n << order
	s.ev.pcpDrain++
}

// drainAll empties every shard's page lists back to the buddy lists:
// drain_all_pages, which direct reclaim runs before its last attempt.
func (z *Zone) drainAll() {
	for i := range z.shards {
		s := &z.shards[i]
		s.mu.Lock()
		for o := range s.lists {
			z.pcpDrain(s, o, len(s.lists[o]))
		}
		s.mu.Unlock()
	}
}

// DrainPages returns every block cached on the zone's per-CPU-style lists to
// the buddy lists, where they count as free and merge with their buddies:
// drain_all_pages. Direct reclaim does it before its last attempt.
func (z *Zone) DrainPages() { z.drainAll() }
