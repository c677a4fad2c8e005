package mmnotifier_test

import (
	"errors"
	"fmt"
	"sync"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/mmnotifier"
)

// A user-space driver mirrors the application's real memory, exactly as a
// kernel driver mirrors an address space (Documentation/mm/hmm.rst): the
// interval notifier, ReadBegin, HMMRangeFault and ReadRetry are the same
// calls as against an MM. When the application drops pages with madvise or
// unmaps them, the device's copies go first.
func ExampleNewProcess() {
	zone, _ := gfp.NewZone(4 << 20)
	defer zone.Close()
	p, err := mmnotifier.NewProcess(8*mmnotifier.PageSize,
		mmnotifier.WithMMOptions(mmnotifier.WithZone(zone)),
		mmnotifier.WithPageFault(func(addr uint64, page []byte) { copy(page, "fresh") }))
	if errors.Is(err, mmnotifier.ErrNoUserfaultfd) {
		fmt.Println(err) // not Linux, no permission, or a sandbox: says which
		return
	}
	defer p.Close()

	d := &copyMirror{pt: map[uint64][]byte{}}
	sub, _ := mmnotifier.InsertInterval(p.MM(), p.Addr(), p.Len(), d)
	defer sub.Remove()

	// The device reads four pages: they fault in through the fault path.
	mm, start := p.MM(), p.Addr()
	r := mmnotifier.HMMRange{Notifier: sub, Start: start, End: start + 4*mmnotifier.PageSize,
		PFNs: make([]uint64, 4), DefaultFlags: mmnotifier.HMMPFNReqFault}
	for {
		r.NotifierSeq = sub.ReadBegin()
		mm.MmapLock().RLock()
		err := mmnotifier.HMMRangeFault(&r)
		mm.MmapLock().RUnlock()
		if errors.Is(err, mmnotifier.ErrBusy) {
			continue
		}
		d.mu.Lock()
		if sub.ReadRetry(r.NotifierSeq) {
			d.mu.Unlock()
			continue
		}
		for a := r.Start; a < r.End; a += mmnotifier.PageSize {
			off := a - start
			d.pt[a] = append([]byte(nil), p.Bytes()[off:off+mmnotifier.PageSize]...)
		}
		d.mu.Unlock()
		break
	}
	fmt.Println(len(d.pt), "pages mirrored:", string(d.pt[start][:5]))

	// The application drops one page and unmaps another: real syscalls.
	_ = p.Madvise(0, mmnotifier.PageSize)
	_ = p.Munmap(3*mmnotifier.PageSize, mmnotifier.PageSize)
	fmt.Println(len(d.pt), "pages mirrored after madvise and munmap")
	p.Sync()
	fmt.Printf("%+v\n", p.Stats())
	// Output:
	// 4 pages mirrored: fresh
	// 2 pages mirrored after madvise and munmap
	// {Faults:4 Events:2 Foreign:0}
}

// copyMirror is a device that keeps a copy of each page it mirrors.
type copyMirror struct {
	mu sync.Mutex
	pt map[uint64][]byte
}

func (d *copyMirror) Invalidate(sub *mmnotifier.IntervalNotifier, r *mmnotifier.Range, cur uint64) bool {
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
