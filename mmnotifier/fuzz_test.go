package mmnotifier_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
)

// modelPage is what the reference model knows of one page of the window.
type modelPage struct {
	mapped, present bool
	prot            mmnotifier.Prot
}

// rangeNotifier records the ranges of the invalidations it sees, and
// checks that every start has its end.
type rangeNotifier struct {
	open   *mmnotifier.Range
	ranges [][2]uint64
	events []mmnotifier.Event
}

func (n *rangeNotifier) InvalidateRangeStart(r *mmnotifier.Range) error {
	n.open = r
	n.ranges = append(n.ranges, [2]uint64{r.Start, r.End})
	n.events = append(n.events, r.Event)
	return nil
}

func (n *rangeNotifier) InvalidateRangeEnd(r *mmnotifier.Range) {
	if n.open != r {
		panic("end without its start")
	}
	n.open = nil
}

// FuzzAddressSpace drives Mmap, Unmap, Protect, Discard and Fault on a
// 32-page window from the fuzzer's bytes and compares the address space,
// and the invalidations its notifier sees, with a page-by-page model.
func FuzzAddressSpace(f *testing.F) {
	f.Add([]byte{1, 4, 8, 2, 0, 32, 1, 3, 2, 5, 4, 2, 0, 0, 9, 1})
	f.Add([]byte{4, 0, 1, 4, 31, 1, 2, 10, 4, 2, 12, 3, 0, 11, 2, 3, 0, 32, 1})
	f.Add([]byte{0, 3, 5, 0, 20, 6, 5, 0, 0, 4, 1, 1, 2, 2, 2, 1, 16, 16, 3, 8, 8})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const npages = 32
		krulestest.Check(t)
		z := newZone(t, 4<<20, gfp.WithoutKswapd())
		mm := newMM(t, mmnotifier.WithZone(z), mmnotifier.WithoutReclaim())
		n := &rangeNotifier{}
		_, err := mmnotifier.Register(mm, n)
		require.NoError(t, err)
		base, err := mm.Mmap(npages*pg, mmnotifier.ProtReadWrite)
		require.NoError(t, err)
		var model [npages]modelPage
		for i := range model {
			model[i] = modelPage{mapped: true, prot: mmnotifier.ProtReadWrite}
		}
		addr := func(i int) uint64 { return base + uint64(i)*pg }
		prots := []mmnotifier.Prot{mmnotifier.ProtNone, mmnotifier.ProtRead, mmnotifier.ProtReadWrite}

		for len(ops) >= 3 {
			op, a, b := ops[0]%5, int(ops[1])%npages, int(ops[2])
			ops = ops[3:]
			cnt := max(1, min(b%npages, npages-a))
			n.ranges, n.events = nil, nil
			switch op {
			case 0: // Unmap [a, a+cnt)
				require.NoError(t, mm.Unmap(addr(a), uint64(cnt)*pg))
				any := false
				for i := a; i < a+cnt; i++ {
					any = any || model[i].mapped
					model[i] = modelPage{}
				}
				if any {
					require.Equal(t, [][2]uint64{{addr(a), addr(a + cnt)}}, n.ranges)
				} else {
					require.Empty(t, n.ranges)
				}
			case 1: // Protect [a, a+cnt)
				prot := prots[b%3]
				err := mm.Protect(addr(a), uint64(cnt)*pg, prot)
				// do_mprotect_pkey changes what comes before the first
				// hole and fails there.
				stop := a
				for stop < a+cnt && model[stop].mapped {
					stop++
				}
				if stop < a+cnt {
					require.ErrorIs(t, err, mmnotifier.ErrNoMem)
				} else {
					require.NoError(t, err)
				}
				covered := map[int]bool{}
				for _, r := range n.ranges {
					require.GreaterOrEqual(t, r[0], addr(a))
					require.LessOrEqual(t, r[1], addr(stop))
					for p := r[0]; p < r[1]; p += pg {
						i := int((p - base) / pg)
						require.NotEqual(t, prot, model[i].prot, "invalidated a page whose protection stays")
						covered[i] = true
					}
				}
				for i := a; i < stop; i++ {
					if model[i].present && model[i].prot != prot {
						require.True(t, covered[i], "page %d changed protection unseen", i)
					}
					model[i].prot = prot
				}
				for _, e := range n.events {
					require.Equal(t, mmnotifier.EventProtectionVMA, e)
				}
			case 2: // Discard [a, a+cnt)
				err := mm.Discard(addr(a), uint64(cnt)*pg)
				holes := false
				for i := a; i < a+cnt; i++ {
					holes = holes || !model[i].mapped
					model[i].present = false
				}
				if holes {
					require.ErrorIs(t, err, mmnotifier.ErrNoMem)
				} else {
					require.NoError(t, err)
				}
				for _, r := range n.ranges {
					for p := r[0]; p < r[1]; p += pg {
						require.True(t, model[(p-base)/pg].mapped)
					}
				}
			case 3: // Fault a, writing if b is odd
				write := b%2 == 1
				_, err := mm.Fault(addr(a), write)
				m := &model[a]
				ok := m.mapped && (write && m.prot&mmnotifier.ProtWrite != 0 || !write && m.prot&mmnotifier.ProtRead != 0)
				if ok {
					require.NoError(t, err)
					m.present = true
				} else {
					require.True(t, errors.Is(err, mmnotifier.ErrFault), "fault on page %d: %v", a, err)
				}
				require.Empty(t, n.ranges)
			case 4: // Mmap cnt pages: the lowest hole that fits, from base
				got, err := mm.Mmap(uint64(cnt)*pg, prots[b%3])
				require.NoError(t, err)
				require.Empty(t, n.ranges)
				want := npages // past the window, everything is free
				for i := 0; i < npages && want == npages; i++ {
					free := true
					for k := i; k < min(i+cnt, npages); k++ {
						free = free && !model[k].mapped
					}
					if free {
						want = i
					}
				}
				require.Equal(t, addr(want), got)
				for k := want; k < min(want+cnt, npages); k++ {
					model[k] = modelPage{mapped: true, prot: prots[b%3]}
				}
				if want+cnt > npages { // keep the world to the window
					require.NoError(t, mm.Unmap(addr(npages), uint64(want+cnt-npages)*pg))
				}
			}
			rss := 0
			for i := range model {
				_, present := mm.Lookup(addr(i))
				require.Equal(t, model[i].present, present, "page %d", i)
				if present {
					rss++
				}
			}
			require.EqualValues(t, rss, mm.RSS())
		}
	})
}
