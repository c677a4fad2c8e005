//go:build !krules_nolockdep

package mmnotifier_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
)

// pmirror is the dmirror of hmm_test.go on real memory: its device page
// table holds a copy of each page it mirrors, as a device holds what it
// read by DMA, filled under the ReadBegin/ReadRetry loop and zapped by the
// interval callback. The driver code is the same as against an MM; only
// what it maps is real.
type pmirror struct {
	p   *mmnotifier.Process
	mu  lockclass.Mutex   // dmirror->mutex
	pt  map[uint64][]byte // device page table: address -> the device's copy (mu)
	sub *mmnotifier.IntervalNotifier

	retries, faults, zaps atomic.Int64
}

func newPMirror(t testing.TB, p *mmnotifier.Process) *pmirror {
	d := &pmirror{p: p, pt: map[uint64][]byte{}}
	d.mu.Init(lockclass.WithName("&dmirror->mutex"))
	sub, err := mmnotifier.InsertInterval(p.MM(), p.Addr(), p.Len(), d)
	require.NoError(t, err)
	d.sub = sub
	t.Cleanup(sub.Remove)
	return d
}

func (d *pmirror) Invalidate(sub *mmnotifier.IntervalNotifier, r *mmnotifier.Range, cur uint64) bool {
	if r.Blockable() {
		d.mu.Lock()
	} else if !d.mu.TryLock() {
		return false
	}
	d.zaps.Add(1)
	sub.SetSeq(cur)
	for addr := range d.pt {
		if addr >= r.Start && addr < r.End {
			delete(d.pt, addr)
		}
	}
	d.mu.Unlock()
	return true
}

// fault mirrors [start, end): dmirror_range_fault, then the device reads
// the pages.
func (d *pmirror) fault(start, end uint64) error {
	mm := d.p.MM()
	r := mmnotifier.HMMRange{Notifier: d.sub, Start: start, End: end,
		PFNs: make([]uint64, (end-start)/pg), DefaultFlags: mmnotifier.HMMPFNReqFault}
	timeout := time.Now().Add(time.Second)
	for {
		if time.Now().After(timeout) {
			return mmnotifier.ErrBusy
		}
		r.NotifierSeq = d.sub.ReadBegin()
		mm.MmapLock().RLock()
		err := mmnotifier.HMMRangeFault(&r)
		mm.MmapLock().RUnlock()
		if errors.Is(err, mmnotifier.ErrBusy) {
			d.retries.Add(1)
			continue
		}
		if err != nil {
			return err
		}
		d.mu.Lock()
		if d.sub.ReadRetry(r.NotifierSeq) {
			d.mu.Unlock()
			d.retries.Add(1)
			continue
		}
		break
	}
	d.faults.Add(1)
	mem := d.p.Bytes()
	for a := start; a < end; a += pg {
		off := a - d.p.Addr()
		d.pt[a] = append([]byte(nil), mem[off:off+pg]...)
	}
	d.mu.Unlock()
	return nil
}

// check verifies, under the mutex, that every mirrored page equals the
// real page. A page dropped without an invalidation faults in anew with a
// new generation stamp, and so differs.
func (d *pmirror) check() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	mem := d.p.Bytes()
	for addr, cp := range d.pt {
		off := addr - d.p.Addr()
		// Word by word in plain Go, which the scheduler can preempt if
		// the page is missing and the read waits for the monitor.
		for i := 0; i < pg; i += 8 {
			if got, want := binary.LittleEndian.Uint64(mem[off+uint64(i):]), binary.LittleEndian.Uint64(cp[i:]); got != want {
				return fmt.Errorf("stale mirror at %#x+%d: device has %#x, memory %#x", addr, i, want, got)
			}
		}
	}
	return nil
}

func (d *pmirror) size() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pt)
}

// The scenario on real memory: application goroutines madvise, munmap,
// mmap, mremap and touch while device goroutines fault; the mirror always
// equals the real pages.
func TestProcessMirrorAlwaysEqualsTheMemory(t *testing.T) {
	krulestest.Check(t)
	var s stamp
	const npages = 128
	p := newProcess(t, npages, mmnotifier.WithPageFault(s.fill))
	d := newPMirror(t, p)

	deadline := time.Now().Add(300 * time.Millisecond)
	var (
		wg     sync.WaitGroup
		failed atomic.Value
	)
	fail := func(err error) {
		if err != nil {
			failed.CompareAndSwap(nil, err)
		}
	}
	running := func() bool { return time.Now().Before(deadline) && failed.Load() == nil }
	for g := range 2 { // the devices
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for running() {
				i := rng.IntN(npages - 8)
				start := p.Addr() + uint64(i)*pg
				if err := d.fault(start, start+uint64(1+rng.IntN(8))*pg); !errors.Is(err, mmnotifier.ErrFault) {
					fail(err)
				}
				fail(d.check())
			}
		}()
	}
	var (
		ops     [4]atomic.Int64
		touched atomic.Uint64 // keeps the touches' loads
		// taken counts the Mmap and Mremap calls refused because a hole
		// had been given to another mapping (the Go runtime's, here).
		taken atomic.Int64
	)
	for g := range 2 { // the application: each owns half the pages
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 2))
			const half = npages / 2
			base := uint64(g * half)
			mapped := make([]bool, half)
			for i := range mapped {
				mapped[i] = true
			}
			all := func(i, n int, v bool) bool {
				for k := i; k < i+n; k++ {
					if mapped[k] != v {
						return false
					}
				}
				return true
			}
			set := func(i, n int, v bool) {
				for k := i; k < i+n; k++ {
					mapped[k] = v
				}
			}
			mem := p.Bytes()
			for running() {
				n := 1 + rng.IntN(4)
				i := rng.IntN(half - n)
				off := (base + uint64(i)) * pg
				switch op := rng.IntN(4); op {
				case 0: // madvise(MADV_DONTNEED)
					if all(i, n, true) {
						fail(p.Madvise(off, uint64(n)*pg))
						ops[op].Add(1)
					}
				case 1: // touch: a first touch faults through the monitor
					for k := i; k < i+n; k++ {
						if mapped[k] {
							touched.Add(uint64(mem[(base+uint64(k))*pg]))
						}
					}
					ops[op].Add(1)
				case 2: // munmap, or mmap over a hole
					if all(i, n, true) {
						fail(p.Munmap(off, uint64(n)*pg))
						set(i, n, false)
					} else if err := p.Mmap(off, uint64(n)*pg); errors.Is(err, unix.EEXIST) {
						taken.Add(1) // a hole is someone else's now: nothing changed
					} else {
						fail(err)
						set(i, n, true)
					}
					ops[op].Add(1)
				case 3: // mremap elsewhere in the half, then refill the hole
					j := rng.IntN(half - n)
					if (j+n <= i || i+n <= j) && all(i, n, true) {
						err := p.Mremap(off, (base+uint64(j))*pg, uint64(n)*pg)
						if errors.Is(err, mmnotifier.ErrFault) {
							break // the source spans two mappings, which mremap refuses
						}
						if errors.Is(err, unix.EEXIST) {
							taken.Add(1)
							break
						}
						fail(err)
						set(j, n, true)
						if err := p.Mmap(off, uint64(n)*pg); errors.Is(err, unix.EEXIST) {
							taken.Add(1)
							set(i, n, false)
						} else {
							fail(err)
						}
						ops[op].Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	require.NoError(t, d.check())
	p.Sync()
	st := p.Stats()
	t.Logf("%d device faults, %d retries, %d invalidations; ops %d/%d/%d/%d, %d refused (EEXIST); %+v",
		d.faults.Load(), d.retries.Load(), d.zaps.Load(), ops[0].Load(), ops[1].Load(), ops[2].Load(), ops[3].Load(), taken.Load(), st)
	require.Positive(t, d.faults.Load())
	require.Positive(t, d.zaps.Load())
	require.Positive(t, st.Faults)
	for i := range ops {
		require.Positive(t, ops[i].Load())
	}
	require.Zero(t, st.Foreign, "every event was the application's own")

	for g := range 2 { // unmapping everything zaps the whole mirror
		require.NoError(t, p.Munmap(uint64(g*npages/2)*pg, npages/2*pg))
	}
	require.Zero(t, d.size())
}
