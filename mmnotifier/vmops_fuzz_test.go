package mmnotifier_test

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
)

// vmPiece is a VMA of the model, in pages of the window.
type vmPiece struct {
	start, end int
	prot       mmnotifier.Prot
}

// FuzzVMOps drives Unmap and Protect over a 16-page device mapping from
// the fuzzer's bytes and compares the VMAs the device's operations know
// of (opened, not closed) with a model in which a split happens only where
// the protection changes and VMAs with operations never merge; at exit
// every VMA is closed once.
func FuzzVMOps(f *testing.F) {
	f.Add([]byte{1, 4, 4, 1, 6, 1, 0, 5, 2, 1, 0, 16})
	f.Add([]byte{0, 3, 2, 1, 0, 16, 1, 2, 8, 0, 9, 3})
	f.Add([]byte{1, 2, 3, 1, 2, 3, 1, 1, 5, 0, 0, 1, 1, 0, 16})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const npages = 16
		krulestest.Check(t)
		z := newZone(t, 4<<20, gfp.WithoutKswapd())
		mm := newMM(t, mmnotifier.WithZone(z), mmnotifier.WithoutReclaim())
		d := newVMDev(t, mm)
		base, err := mm.MmapDevice(npages*pg, mmnotifier.ProtReadWrite, d.mmap)
		require.NoError(t, err)
		model := []vmPiece{{0, npages, mmnotifier.ProtReadWrite}}
		prots := []mmnotifier.Prot{mmnotifier.ProtNone, mmnotifier.ProtRead, mmnotifier.ProtReadWrite}
		live := func() []vmPiece {
			var out []vmPiece
			for v, s := range d.seen {
				if s != "closed" {
					out = append(out, vmPiece{int((v.Start() - base) / pg), int((v.End() - base) / pg), v.Prot()})
				}
			}
			slices.SortFunc(out, func(a, b vmPiece) int { return a.start - b.start })
			return out
		}
		for len(ops) >= 3 {
			op, a, b := ops[0]%2, int(ops[1])%npages, int(ops[2])
			ops = ops[3:]
			e := a + max(1, min(b%(npages+1), npages-a))
			var next []vmPiece
			switch op {
			case 0: // Unmap [a, e): the pieces outside stay
				require.NoError(t, mm.Unmap(base+uint64(a)*pg, uint64(e-a)*pg))
				for _, p := range model {
					if p.start < a {
						next = append(next, vmPiece{p.start, min(p.end, a), p.prot})
					}
					if p.end > e {
						next = append(next, vmPiece{max(p.start, e), p.end, p.prot})
					}
				}
			case 1: // Protect [a, e) up to the first hole
				prot := prots[b%3]
				stop := a
				for _, p := range model {
					if p.start <= stop && stop < p.end {
						stop = p.end
					}
				}
				stop = min(stop, e)
				err := mm.Protect(base+uint64(a)*pg, uint64(e-a)*pg, prot)
				if stop < e {
					require.ErrorIs(t, err, mmnotifier.ErrNoMem)
				} else {
					require.NoError(t, err)
				}
				for _, p := range model {
					if p.end <= a || p.start >= stop || p.prot == prot {
						next = append(next, p)
						continue
					}
					if p.start < a {
						next = append(next, vmPiece{p.start, a, p.prot})
					}
					next = append(next, vmPiece{max(p.start, a), min(p.end, stop), prot})
					if p.end > stop {
						next = append(next, vmPiece{stop, p.end, p.prot})
					}
				}
			}
			model = next
			require.Equal(t, model, live(), "after op %d [%d, %d)", op, a, e)
		}
		opened := len(d.seen) - 1
		mm.Exit()
		require.Empty(t, live(), "exit closes every VMA")
		require.Equal(t, opened+1, d.closes)
	})
}
