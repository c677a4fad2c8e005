package main

import (
	"errors"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/mmnotifier"
)

// processFigures price MMU notifiers on real memory (mmnotifier.Process):
// a real madvise(MADV_DONTNEED) on memory registered with userfaultfd and
// watched by an interval notifier, beside the same call on plain anonymous
// memory. The kernel makes the caller wait until the monitor has read the
// REMOVE event, so the price is one event round trip per call (its inverse
// is the events per second one goroutine can drive).
//
//   - "1 page, present": the page is made present before each call, by a
//     CPU write on plain memory and by the device's fault path
//     (HMMRangeFault, UFFDIO_COPY) on the process; target 3×.
//   - "1 page, absent": nothing to zap, so the figure is the event round
//     trip itself against the bare syscall; no target.
//   - "512 pages, present" beside plain, and the process's growth from 1
//     to 512 pages: one event per call whatever its length, so the growth
//     is the zapping and faulting, as on plain memory.
//
// They are registered only where userfaultfd works (root here, or
// vm.unprivileged_userfaultfd=1); elsewhere NewProcess's error says why.
func processFigures() []figure {
	if err := probeProcess(); err != nil {
		return nil
	}
	return []figure{
		{
			Name: "uffd madvise 1 page, present", Baseline: "plain madvise", Target: 3, MaxAllocs: -1,
			base: plainMadvise(1, true), rules: processMadvise(1, true),
		},
		{
			Name: "uffd madvise 1 page, absent", Baseline: "plain madvise", MaxAllocs: -1,
			base: plainMadvise(1, false), rules: processMadvise(1, false),
		},
		{
			Name: "uffd madvise 512 pages, present", Baseline: "plain madvise", MaxAllocs: -1,
			base: plainMadvise(512, true), rules: processMadvise(512, true),
		},
		{
			Name: "uffd madvise 512 vs 1 page", Baseline: "1 page", MaxAllocs: -1,
			base: processMadvise(1, true), rules: processMadvise(512, true),
		},
	}
}

func probeProcess() error {
	p, err := mmnotifier.NewProcess(gfp.PageSize)
	if err != nil {
		return err
	}
	return p.Close()
}

// plainMadvise drops pages pages of plain anonymous memory each time,
// after writing to each if present.
func plainMadvise(pages int, present bool) func(b *testing.B) {
	return func(b *testing.B) {
		mem, err := unix.Mmap(-1, 0, pages*gfp.PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Munmap(mem) //nolint:errcheck
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if present {
				for i := 0; i < len(mem); i += gfp.PageSize {
					mem[i] = 1
				}
			}
			if err := unix.Madvise(mem, unix.MADV_DONTNEED); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// processMadvise drops pages pages of a Process each time, with an
// interval notifier (a mirror's, which takes its lock and sets the
// sequence) over them, after faulting them in through HMMRangeFault if
// present.
func processMadvise(pages int, present bool) func(b *testing.B) {
	return func(b *testing.B) {
		z, err := gfp.NewZone(1<<20, gfp.WithoutKswapd())
		if err != nil {
			b.Fatal(err)
		}
		defer z.Close()
		length := uint64(pages) * gfp.PageSize
		p, err := mmnotifier.NewProcess(length, mmnotifier.WithMMOptions(mmnotifier.WithZone(z)))
		if errors.Is(err, mmnotifier.ErrNoUserfaultfd) {
			b.Skip(err)
		} else if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		var m processMirror
		sub, err := mmnotifier.InsertInterval(p.MM(), p.Addr(), length, &m)
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Remove()
		r := mmnotifier.HMMRange{Notifier: sub, Start: p.Addr(), End: p.Addr() + length,
			PFNs: make([]uint64, pages), DefaultFlags: mmnotifier.HMMPFNReqFault | mmnotifier.HMMPFNReqWrite}
		mm := p.MM()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if present {
				r.NotifierSeq = sub.ReadBegin()
				mm.MmapLock().RLock()
				err := mmnotifier.HMMRangeFault(&r)
				mm.MmapLock().RUnlock()
				if err != nil && !errors.Is(err, mmnotifier.ErrBusy) {
					b.Fatal(err)
				}
			}
			if err := p.Madvise(0, length); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		p.Sync()
		if st := p.Stats(); st.Foreign != 0 || st.Events < int64(b.N) {
			b.Fatalf("%+v after %d calls", st, b.N)
		}
	}
}

// processMirror is the cheapest correct interval callback of a mirroring
// driver: take the lock, set the sequence, count.
type processMirror struct {
	mu   sync.Mutex
	zaps int
}

func (m *processMirror) Invalidate(sub *mmnotifier.IntervalNotifier, _ *mmnotifier.Range, cur uint64) bool {
	m.mu.Lock()
	sub.SetSeq(cur)
	m.zaps++
	m.mu.Unlock()
	return true
}
