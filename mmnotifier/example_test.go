package mmnotifier_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/mmnotifier"
)

// A notifier sees every change to the mappings of the address space it is
// registered on, while the pages are still mapped (start) and after (end).
func ExampleRegister() {
	zone, _ := gfp.NewZone(8 << 20)
	defer zone.Close()
	mm := mmnotifier.NewMM(mmnotifier.WithZone(zone))
	defer mm.Exit()

	f := &mmnotifier.Funcs{
		Start: func(r *mmnotifier.Range) error { fmt.Println("start", r.Event, r.Blockable()); return nil },
		End:   func(r *mmnotifier.Range) { fmt.Println("end", r.Event) },
	}
	sub, err := mmnotifier.Register(mm, f.Notifier())
	if err != nil {
		panic(err)
	}
	defer sub.Unregister()

	addr, _ := mm.Mmap(4*mmnotifier.PageSize, mmnotifier.ProtReadWrite)
	_ = mm.Write(addr, []byte("data"))
	_ = mm.Protect(addr, 4*mmnotifier.PageSize, mmnotifier.ProtRead)
	_ = mm.Unmap(addr, 4*mmnotifier.PageSize)
	fmt.Printf("%+v\n", f.Counts())
	// Output:
	// start MMU_NOTIFY_PROTECTION_VMA true
	// end MMU_NOTIFY_PROTECTION_VMA
	// start MMU_NOTIFY_UNMAP true
	// end MMU_NOTIFY_UNMAP
	// {Starts:2 Ends:2 Failures:0 Releases:0}
}

// A stream of invalidations from several goroutines, blockable and not, as
// a benchmark drives a driver's notifier: each goroutine reuses one Range
// and holds mmap_lock for reading, so they run in parallel and allocate
// nothing.
func Example_invalidationStream() {
	zone, _ := gfp.NewZone(8 << 20)
	defer zone.Close()
	mm := mmnotifier.NewMM(mmnotifier.WithZone(zone))
	defer mm.Exit()

	var nonblocking atomic.Int64
	f := &mmnotifier.Funcs{Start: func(r *mmnotifier.Range) error {
		if !r.Blockable() {
			nonblocking.Add(1) // runs in a non-block section: must not sleep
		}
		// ... a scratch buffer for the update, built without sleeping ...
		return nil
	}}
	sub, _ := mmnotifier.Register(mm, f.Notifier())
	defer sub.Unregister()

	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := mmnotifier.NewRange(mm, mmnotifier.EventClear, uint64(g)<<20, uint64(g+1)<<20)
			mm.MmapLock().RLock()
			defer mm.MmapLock().RUnlock()
			for i := range 1000 {
				if i%2 == 0 {
					mmnotifier.InvalidateRangeStart(&r)
					mmnotifier.InvalidateRangeEnd(&r)
				} else if mmnotifier.InvalidateRangeStartNonblock(&r) == nil {
					mmnotifier.InvalidateRangeEnd(&r)
				}
			}
		}()
	}
	wg.Wait()
	fmt.Println(f.Counts().Starts, nonblocking.Load())
	// Output: 4000 2000
}

// The OOM reaper never waits for a notifier: one that would have to
// returns ErrAgain, and the reaper tries again a little later.
func ExampleMM_OOMReap() {
	zone, _ := gfp.NewZone(8 << 20)
	defer zone.Close()
	mm := mmnotifier.NewMM(mmnotifier.WithZone(zone), mmnotifier.WithTask(1234, "victim"))
	defer mm.Exit()

	busy := 3 // the device is busy for the first three tries
	f := &mmnotifier.Funcs{Start: func(r *mmnotifier.Range) error {
		if !r.Blockable() && busy > 0 {
			busy--
			return mmnotifier.ErrAgain
		}
		return nil
	}}
	sub, _ := mmnotifier.Register(mm, f.Notifier())
	defer sub.Unregister()
	addr, _ := mm.Mmap(16*mmnotifier.PageSize, mmnotifier.ProtReadWrite)
	_ = mm.Write(addr, make([]byte, 16*mmnotifier.PageSize))

	res := mm.OOMReap(context.Background(), mmnotifier.WithRetryDelay(time.Millisecond))
	fmt.Printf("%+v rss=%d\n", res, mm.RSS())
	// Output: {Tries:4 Reaped:true Freed:16} rss=0
}

// The driver side of interval notifiers (Documentation/mm/hmm.rst): mirror
// a range with HMMRangeFault between ReadBegin and ReadRetry, and retry if
// an invalidation collided.
func ExampleInsertInterval() {
	zone, _ := gfp.NewZone(8 << 20)
	defer zone.Close()
	mm := mmnotifier.NewMM(mmnotifier.WithZone(zone))
	defer mm.Exit()
	addr, _ := mm.Mmap(4*mmnotifier.PageSize, mmnotifier.ProtReadWrite)

	d := &device{pt: map[uint64]uint64{}}
	sub, err := mmnotifier.InsertInterval(mm, addr, 4*mmnotifier.PageSize, d)
	if err != nil {
		panic(err)
	}
	defer sub.Remove()

	r := mmnotifier.HMMRange{Notifier: sub, Start: addr, End: addr + 4*mmnotifier.PageSize,
		PFNs: make([]uint64, 4), DefaultFlags: mmnotifier.HMMPFNReqFault}
	for {
		r.NotifierSeq = sub.ReadBegin()
		mm.MmapLock().RLock()
		err := mmnotifier.HMMRangeFault(&r)
		mm.MmapLock().RUnlock()
		if err == mmnotifier.ErrBusy {
			continue
		} else if err != nil {
			panic(err)
		}
		d.mu.Lock()
		if sub.ReadRetry(r.NotifierSeq) {
			d.mu.Unlock()
			continue
		}
		for i, pfn := range r.PFNs {
			d.pt[addr+uint64(i)*mmnotifier.PageSize] = pfn
		}
		d.mu.Unlock()
		break
	}
	fmt.Println(len(d.pt), "pages mirrored")
	_ = mm.Discard(addr, mmnotifier.PageSize)
	fmt.Println(len(d.pt), "after a discard")
	// Output:
	// 4 pages mirrored
	// 3 after a discard
}

type device struct {
	mu sync.Mutex
	pt map[uint64]uint64
}

func (d *device) Invalidate(sub *mmnotifier.IntervalNotifier, r *mmnotifier.Range, cur uint64) bool {
	if r.Blockable() {
		d.mu.Lock()
	} else if !d.mu.TryLock() {
		return false
	}
	defer d.mu.Unlock()
	sub.SetSeq(cur)
	for a := range d.pt {
		if a >= r.Start && a < r.End {
			delete(d.pt, a)
		}
	}
	return true
}
