package mempool_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mempool"
)

// poolModel is mm/mempool.c reduced to its bookkeeping, for one goroutine
// and an allocator that either always fails or always succeeds: the
// reserve (a LIFO stack, remove_element takes the newest), the elements
// out, and what the pool must hand the allocator, in order.
type poolModel struct {
	minNr    int
	reserve  []int
	out      []int // in the order they went out
	failing  bool
	given    int         // elements the allocator gave
	calls    []gfp.Flags // allocator calls, in order; an element is its call's number
	freed    []int       // elements given back to the allocator, in order
	reports  int         // MempoolMisuse reports so far
	lastFree int         // the element the last good Free gave back, 0 if none
}

func (m *poolModel) allocate(f gfp.Flags) (int, bool) {
	m.calls = append(m.calls, f)
	if m.failing {
		return 0, false
	}
	m.given++
	return len(m.calls), true
}

func (m *poolModel) pop() int {
	x := m.reserve[len(m.reserve)-1]
	m.reserve = m.reserve[:len(m.reserve)-1]
	return x
}

// alloc is mempool_alloc for flags that do not sleep here: the allocator
// with the first pass's flags, then the reserve, then (with
// __GFP_DIRECT_RECLAIM only, which the fuzz target never lets get that
// far) the allocator again. ok false is NULL.
func (m *poolModel) alloc(flags gfp.Flags) (x int, ok bool) {
	flags |= gfp.NoMemalloc | gfp.NoRetry | gfp.NoWarn
	if x, ok = m.allocate(flags &^ (gfp.DirectReclaim | gfp.IO)); !ok {
		if len(m.reserve) == 0 {
			return 0, false
		}
		x = m.pop()
	}
	m.out = append(m.out, x)
	return x, true
}

// sleeps reports whether mempool_alloc(flags) would wait: the allocator
// fails, the reserve is empty and the flags allow direct reclaim.
func (m *poolModel) sleeps(flags gfp.Flags) bool {
	return m.failing && len(m.reserve) == 0 && flags&gfp.DirectReclaim != 0
}

// free is mempool_free of x, which is out: the reserve takes it while
// below min_nr (or, for min_nr 0, while empty), else the allocator does.
func (m *poolModel) free(x int) {
	m.out = slices.DeleteFunc(m.out, func(y int) bool { return y == x })
	if len(m.reserve) < m.minNr || m.minNr == 0 && len(m.reserve) == 0 {
		m.reserve = append(m.reserve, x)
	} else {
		m.freed = append(m.freed, x)
	}
	m.lastFree = x
}

// resize is mempool_resize(newMin > 0): the surplus reserve goes to the
// allocator, newest first; a larger target is filled with GFP_KERNEL
// allocations until one fails.
func (m *poolModel) resize(newMin int) {
	if newMin <= m.minNr {
		for len(m.reserve) > newMin {
			m.freed = append(m.freed, m.pop())
		}
		m.minNr = newMin
		return
	}
	m.minNr = newMin
	for len(m.reserve) < m.minNr {
		x, ok := m.allocate(gfp.Kernel)
		if !ok {
			return
		}
		m.reserve = append(m.reserve, x)
	}
}

// FuzzPoolAgainstModel runs a script of allocations (GFP_ATOMIC,
// GFP_NOWAIT, and GFP_KERNEL where it would not sleep), preallocated
// allocations, frees, double and foreign frees, resizes (0 included) and
// allocator failures on a debug-mode pool, and checks every step against
// poolModel: the element each call returns, the flags and order of every
// allocator call, which frees refill the reserve and which reach the
// allocator, the pool's counts, and one MempoolMisuse report, with nothing
// changed, for each bad call. The first byte is min_nr; each byte after it
// is one step: the low three bits the operation, the rest its argument.
func FuzzPoolAgainstModel(f *testing.F) {
	f.Add([]byte{2, 0, 0, 0, 4, 4, 4})                     // allocate past the reserve, free back
	f.Add([]byte{2, 7, 0, 0, 0, 1, 3, 7, 4, 4})            // the reserve absorbs allocator failures
	f.Add([]byte{2, 6 | 5<<3, 2, 2, 7, 2, 6 | 1<<3, 4})    // grow, then shrink to the allocator
	f.Add([]byte{2, 6, 5, 4, 5, 3, 5, 7, 6 | 8<<3, 0, 4})  // bad input: resize 0, double and foreign frees
	f.Add([]byte{2, 6 | 1<<3, 3, 3, 4, 4, 7, 6 | 3<<3, 0}) // a failed refill leaves the target raised
	f.Add([]byte{0, 0, 0, 4, 4, 7, 3, 1, 4})               // min_nr 0: a free refills an empty reserve
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 200 {
			script = script[:200]
		}
		rec := krulestest.Record(t)
		m := &poolModel{minNr: 2}
		if len(script) > 0 { // the first byte is min_nr, 0 to 3
			m.minNr, script = int(script[0]%4), script[1:]
		}
		var calls []gfp.Flags
		var freed []int
		p, err := mempool.New(m.minNr, func(f gfp.Flags) (int, error) {
			calls = append(calls, f)
			if m.failing {
				return 0, errors.New("allocator fails")
			}
			return len(calls), nil // an element is its call's number
		}, func(x int) { freed = append(freed, x) }, mempool.WithDebug(true), mempool.WithName("fuzz_pool"))
		require.NoError(t, err)
		for range max(1, m.minNr) { // mempool_init, with the pool's flags
			x, _ := m.allocate(gfp.Kernel)
			m.reserve = append(m.reserve, x)
		}

		for step, b := range script {
			op, arg := b&7, int(b>>3)
			switch op {
			case 0, 1, 2:
				flags := []gfp.Flags{gfp.Atomic, gfp.NoWait, gfp.Kernel}[op]
				if m.sleeps(flags) {
					continue
				}
				want, ok := m.alloc(flags)
				x, err := p.Alloc(flags)
				if ok {
					require.NoError(t, err, "step %d", step)
					require.Equal(t, want, x, "step %d: the allocator's element or the newest reserve one", step)
				} else {
					require.ErrorIs(t, err, gfp.ErrNoMemory, "step %d", step)
				}
			case 3:
				want, ok := 0, len(m.reserve) > 0
				if ok {
					want = m.pop()
					m.out = append(m.out, want)
				}
				x, got := p.AllocPreallocated()
				require.Equal(t, ok, got, "step %d", step)
				require.Equal(t, want, x, "step %d", step)
			case 4:
				if len(m.out) == 0 {
					p.Free(1 << 20) // none out: a foreign free
					m.reports++
					break
				}
				x := m.out[arg%len(m.out)]
				m.free(x)
				p.Free(x)
			case 5:
				// A double free of the last element given back while it is
				// not out again, or else one the pool never handed out.
				x := 1<<20 + arg
				if m.lastFree != 0 && !slices.Contains(m.out, m.lastFree) {
					x = m.lastFree
				}
				p.Free(x)
				m.reports++
			case 6:
				n := arg % 9
				err := p.Resize(n)
				if n == 0 {
					require.Error(t, err, "step %d", step)
					m.reports++
					break
				}
				require.NoError(t, err, "step %d", step)
				m.resize(n)
			case 7:
				m.failing = !m.failing
			}
			require.Equal(t, m.calls, calls, "step %d: allocator calls", step)
			require.Equal(t, m.freed, freed, "step %d: frees that reached the allocator", step)
			st := p.Stats()
			require.Equal(t, m.minNr, st.MinNr, "step %d", step)
			require.Equal(t, len(m.reserve), st.Reserve, "step %d", step)
			require.Equal(t, int64(len(m.out)), st.Outstanding, "step %d", step)
			require.Len(t, rec.Kinds(), m.reports, "step %d", step)
			for _, k := range rec.Kinds() {
				require.Equal(t, krules.MempoolMisuse, k)
			}
		}

		for len(m.out) > 0 {
			x := m.out[0]
			m.free(x)
			p.Free(x)
		}
		require.NoError(t, p.Close())
		require.Len(t, freed, m.given, "every element the allocator gave went back to it")
	})
}
