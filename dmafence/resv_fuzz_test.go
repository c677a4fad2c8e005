package dmafence_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/krulestest"
)

// modelFence is a fence as resvModel sees it: its timeline (0 to 3), its
// sequence number, and whether the script has signalled it.
type modelFence struct {
	ctx      int
	seqno    uint64
	signaled bool
}

// resvEntry is one slot of the fence list: a fence (an index into
// resvModel.fences) and the usage it was added with.
type resvEntry struct {
	fence int
	usage dmafence.Usage
}

// resvModel is drivers/dma-buf/dma-resv.c's fence container reduced to its
// bookkeeping for one goroutine: the list in slot order, its max_fences
// and the reports the misuses raise. Where the kernel stops the task
// (BUG_ON on a missing reservation) it follows krules' documented
// continuation, the fence added all the same.
type resvModel struct {
	fences  []modelFence
	list    []resvEntry
	max     int
	held    bool
	reports int // FenceMisuse reports so far
}

// roundupPowOfTwo is roundup_pow_of_two for the counts the script asks
// for; 0 rounds to 1, as the kernel's shift by 64 does on x86.
func roundupPowOfTwo(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// reserve is dma_resv_reserve_fences(n): nothing if the room left holds
// n, else a new list of max(num + n, 2 * max) (or, with no room,
// max(4, roundup_pow_of_two(n))) that keeps the unsignalled fences in
// order and drops the signalled ones.
func (m *resvModel) reserve(n int) {
	var room int
	if m.max != 0 {
		if len(m.list)+n <= m.max {
			return
		}
		room = max(len(m.list)+n, 2*m.max)
	} else {
		room = max(4, roundupPowOfTwo(n))
	}
	m.list = slices.DeleteFunc(m.list, func(e resvEntry) bool { return m.fences[e.fence].signaled })
	m.max = room
}

// add is dma_resv_add_fence(f, usage) of v6.12: the first slot whose fence
// is of f's context with a usage no lower and which f is later than or the
// same as (dma_fence_is_later_or_same), or whose fence is signalled, takes
// f; otherwise f takes a new slot, which must have been reserved.
func (m *resvModel) add(f int, usage dmafence.Usage) {
	nf := m.fences[f]
	for i, e := range m.list {
		old := m.fences[e.fence]
		if old.ctx == nf.ctx && e.usage >= usage && (e.fence == f || nf.seqno > old.seqno) || old.signaled {
			m.list[i] = resvEntry{f, usage}
			return
		}
	}
	if len(m.list) >= m.max {
		m.reports++
		m.max = len(m.list) + 1
	}
	m.list = append(m.list, resvEntry{f, usage})
}

// walk is dma_resv_for_each_fence_unlocked(usage) over the list as it is
// when called: the unsignalled fences of usage and lower, in slot order.
// signalAt, if not nil, is run after each fence is yielded, and a fence
// it signals is passed over when the walk reaches it.
func (m *resvModel) walk(usage dmafence.Usage, signalAt func(yielded int)) []resvEntry {
	var out []resvEntry
	for _, e := range slices.Clone(m.list) {
		if m.fences[e.fence].signaled || e.usage > usage {
			continue
		}
		out = append(out, e)
		if signalAt != nil {
			signalAt(len(out))
		}
	}
	return out
}

// FuzzResvAgainstModel runs a script of locks and unlocks, reservations,
// fence additions (timelines 0 to 3, sequence numbers 0 to 7, any usage,
// a new fence or the one made before for the same timeline and number),
// signals (second ones included), unlocked walks (some signalling a fence
// mid-walk or stopping early), TestSignaled, polls with WaitTimeout (0,
// a negative timeout, and a long one once nothing is left to wait for),
// Wait with a cancelled context and re-initialisation, on one goroutine,
// and checks every step against resvModel: the whole list in slot order
// with its room, what the unlocked walk yields for every usage, the waits'
// results, and one FenceMisuse report for each missing reservation, second
// signal and negative timeout. Each byte is one step: the low three bits
// the operation, the rest its argument; an addition takes one byte more.
func FuzzResvAgainstModel(f *testing.F) {
	f.Add([]byte{1 | 1<<3, 2 | 2<<3, 0x00, 2 | 1<<3, 0x04, 3, 4 | 3<<3, 5 | 3<<3})            // reserve, add two, signal one, walk, poll
	f.Add([]byte{1, 2 | 1<<3, 0x00, 2 | 1<<3, 0x04, 2 | 1<<3, 0x08, 2 | 1<<3, 0x0c, 2, 0x01}) // four fit in the room of a fresh object; the fifth has none
	f.Add([]byte{1, 2 | 2<<3, 0x04, 2 | 1<<3, 0x08, 2 | 3<<3, 0x0c, 2 | 0<<3, 0x00, 0, 0})    // the same timeline: later replaces unless looser
	f.Add([]byte{1 | 2<<3, 2 | 1<<3, 0x00, 2 | 5<<3, 0x00, 2 | 1<<3, 0x00, 3, 3, 5 | 11<<3})  // the same fence again, a new one with the same seqno, a second signal
	f.Add([]byte{1 | 3<<3, 2, 0x00, 2, 0x01, 2, 0x02, 3, 1 | 4<<3, 0, 2, 0x03, 0, 2, 0x05})   // growing drops signalled fences; unlock gives the room up
	f.Add([]byte{1, 2 | 3<<3, 0x00, 2 | 3<<3, 0x01, 2 | 3<<3, 0x02, 4 | 7<<3, 0x01, 4 | 11<<3, 0x02, 5 | 7<<3, 6})
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 200 {
			script = script[:200]
		}
		krulestest.ResetDefault(t) // the no-room BUG_ON's oops turns lock debugging off
		rec := krulestest.Record(t)
		r := dmafence.NewResv()
		tl := dmafence.ContextAlloc(4)
		m := &resvModel{}
		var fences []*dmafence.Fence
		latest := map[[2]uint64]int{} // (timeline, seqno) -> the fence made last
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		t.Cleanup(func() { // a failed step leaves the lock held
			if m.held {
				r.Unlock()
			}
		})
		lock := func() {
			if !m.held {
				require.NoError(t, r.Lock(nil))
				m.held = true
			}
		}
		// signal signals fence i on both sides: a second signal is
		// ErrAlreadySignaled and a report.
		signal := func(i int) {
			err := fences[i].Signal()
			if m.fences[i].signaled {
				require.ErrorIs(t, err, dmafence.ErrAlreadySignaled)
				m.reports++
				return
			}
			require.NoError(t, err)
			m.fences[i].signaled = true
		}
		entries := func(es []resvEntry) (fs []*dmafence.Fence, us []dmafence.Usage) {
			fs, us = []*dmafence.Fence{}, []dmafence.Usage{}
			for _, e := range es {
				fs, us = append(fs, fences[e.fence]), append(us, e.usage)
			}
			return fs, us
		}

		for step := 0; step < len(script); step++ {
			b := script[step]
			op, arg := b&7, int(b>>3)
			switch op {
			case 0:
				if m.held {
					r.Unlock() // dma_resv_reset_max_fences
					m.held, m.max = false, len(m.list)
				} else {
					lock()
				}
			case 1:
				lock()
				n := arg % 12
				require.NoError(t, r.ReserveFences(n), "step %d", step)
				m.reserve(n)
			case 2:
				if step+1 >= len(script) {
					break
				}
				step++
				x := script[step]
				usage, fresh := dmafence.Usage(arg&3), arg&4 != 0
				ctx, seqno := int(x&3), uint64(x>>2&7)
				key := [2]uint64{uint64(ctx), seqno}
				i, ok := latest[key]
				if fresh || !ok {
					i = len(fences)
					fences = append(fences, dmafence.New(tl+uint64(ctx), seqno))
					m.fences = append(m.fences, modelFence{ctx: ctx, seqno: seqno})
					latest[key] = i
				}
				lock()
				r.AddFence(fences[i], usage)
				m.add(i, usage)
			case 3:
				if len(fences) > 0 {
					signal(arg % len(fences))
				}
			case 4:
				usage := dmafence.Usage(arg & 3)
				var signalAt func(int)
				var target, stop int
				if arg&4 != 0 && len(fences) > 0 && step+1 < len(script) {
					step++
					target = int(script[step]) % len(fences)
					signalAt = func(yielded int) { // the model's side; the loop below signals the fence
						if yielded == 1 {
							m.fences[target].signaled = true
						}
					}
				}
				want := m.walk(usage, signalAt)
				if arg&8 != 0 {
					stop = 1 // the walk's consumer stops after the first
					want = want[:min(1, len(want))]
				}
				wantF, wantU := entries(want)
				gotF, gotU := []*dmafence.Fence{}, []dmafence.Usage{}
				for f, u := range r.Fences(usage) {
					gotF, gotU = append(gotF, f), append(gotU, u)
					if len(gotF) == 1 && signalAt != nil && !fences[target].IsSignaled() {
						require.NoError(t, fences[target].Signal())
					}
					if stop > 0 && len(gotF) == stop {
						break
					}
				}
				require.Equal(t, wantF, gotF, "step %d: the unlocked walk of %v", step, usage)
				require.Equal(t, wantU, gotU, "step %d", step)
			case 5:
				usage := dmafence.Usage(arg & 3)
				idle := len(m.walk(usage, nil)) == 0
				switch arg >> 2 {
				case 0: // a poll: dma_resv_wait_timeout's "timeout ? timeout : 1"
					want := time.Duration(0)
					if idle {
						want = 1
					}
					require.Equal(t, want, r.WaitTimeout(usage, 0), "step %d", step)
				case 1: // the first fence waited for refuses a negative timeout
					want := time.Duration(-5)
					if !idle {
						want = dmafence.InvalidTimeout
						m.reports++
					}
					require.Equal(t, want, r.WaitTimeout(usage, -5), "step %d", step)
				case 2:
					var want error
					if !idle {
						want = context.Canceled
					}
					require.Equal(t, want, r.Wait(cancelled, usage), "step %d", step)
				default: // only where nothing is left to wait for
					if idle {
						require.Equal(t, time.Hour, r.WaitTimeout(usage, time.Hour), "step %d", step)
					}
				}
				require.Equal(t, idle, r.TestSignaled(usage), "step %d", step)
			case 6:
				if !m.held {
					r.Init() // dma_resv_init: no list, no room
					m.list, m.max = nil, 0
				}
			case 7:
				if m.held && len(m.list) > 0 {
					// dma_resv_add_fence of a fence the list holds, with
					// its own usage: it replaces itself.
					e := m.list[arg%len(m.list)]
					r.AddFence(fences[e.fence], e.usage)
					m.add(e.fence, e.usage)
				}
			}
			listed, _ := entries(m.list)
			require.Equal(t, listed, dmafence.Listed(r), "step %d: the list, slot by slot", step)
			require.Equal(t, m.max, dmafence.Room(r), "step %d: max_fences", step)
			for u := dmafence.UsageKernel; u <= dmafence.UsageBookkeep; u++ {
				wantF, wantU := entries(m.walk(u, nil))
				gotF, gotU := []*dmafence.Fence{}, []dmafence.Usage{}
				for f, fu := range r.Fences(u) {
					gotF, gotU = append(gotF, f), append(gotU, fu)
				}
				require.Equal(t, wantF, gotF, "step %d: the unlocked walk of %v", step, u)
				require.Equal(t, wantU, gotU, "step %d", step)
			}
			require.Len(t, rec.Kinds(), m.reports, "step %d", step)
			for _, k := range rec.Kinds() {
				require.Equal(t, krules.FenceMisuse, k)
			}
		}
	})
}
