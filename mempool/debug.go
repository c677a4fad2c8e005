package mempool

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
)

// Debug mode: the elements a pool has handed out, with who took them and
// where, and the slab poison of the reserve.

type owner struct {
	goid int64
	site runtime.Frame
}

type debugState struct {
	mu      sync.Mutex
	out     map[any]owner
	waiters map[int64]int // goroutines waiting in Alloc, by id
}

func newDebugState() *debugState {
	return &debugState{out: map[any]owner{}, waiters: map[int64]int{}}
}

// waiting counts the calling goroutine in (+1) or out (-1) of the pool's
// waiters. It does nothing outside debug mode (d == nil).
func (d *debugState) waiting(delta int) {
	if d == nil {
		return
	}
	id := task.ID()
	d.mu.Lock()
	if d.waiters[id] += delta; d.waiters[id] == 0 {
		delete(d.waiters, id)
	}
	d.mu.Unlock()
}

// track records an element handed to the calling goroutine.
func (d *debugState) track(key any) {
	site := stack.Caller(0)
	id := task.ID()
	d.mu.Lock()
	d.out[key] = owner{id, site}
	d.mu.Unlock()
}

// untrack forgets an element; false if it was not out.
func (d *debugState) untrack(key any) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.out[key]; !ok {
		return false
	}
	delete(d.out, key)
	return true
}

// heldBy returns the allocation sites of the elements the calling
// goroutine took and has not freed, and whether every element out was
// taken by a goroutine now waiting for another (the caller, which has just
// timed out, is about to wait again): then no free can come.
func (d *debugState) heldBy() (sites []string, stuck bool) {
	id := task.ID()
	d.mu.Lock()
	defer d.mu.Unlock()
	stuck = true
	for _, o := range d.out {
		if o.goid == id {
			sites = append(sites, stack.FormatFrame(o.site))
		}
		if o.goid != id && d.waiters[o.goid] == 0 { // the caller waits on
			stuck = false
		}
	}
	sort.Strings(sites)
	return sites, stuck
}

// describe lists the outstanding elements by allocation site.
func (d *debugState) describe() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var lines []string
	for _, o := range d.out {
		lines = append(lines, fmt.Sprintf(" allocated by goroutine %d at: %s", o.goid, stack.FormatFrame(o.site)))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// The kernel's slab poison bytes (include/linux/poison.h).
const (
	poisonInUse = 0x5a
	poisonFree  = 0x6b
	poisonEnd   = 0xa5
)

// poison fills an element entering the reserve: POISON_FREE, then
// POISON_END in the last byte.
func poison(b []byte) {
	if len(b) == 0 {
		return
	}
	for i := range b {
		b[i] = poisonFree
	}
	b[len(b)-1] = poisonEnd
}

// checkPoison verifies an element leaving the reserve and marks it in use.
// It returns the offset of the first wrong byte, or -1.
func checkPoison(b []byte) int {
	for i, c := range b {
		want := byte(poisonFree)
		if i == len(b)-1 {
			want = poisonEnd
		}
		if c != want {
			return i
		}
	}
	for i := range b {
		b[i] = poisonInUse
	}
	return -1
}

// reportPoison is poison_error(): something wrote to an element while it
// sat in the reserve, after it was freed. nr is the reserve's count once
// the element was taken out (curr_nr after remove_element's decrement).
func (p *Pool[T]) reportPoison(x T, at, nr int) {
	b := p.ops.bytes(x)
	const word = 8
	start, end := max(at-word, 0), min(at+word, len(b))
	r := krules.NewReport(krules.MempoolPoison, "BUG: mempool element poison mismatch", 0)
	r.Printf("%s\n", r.Headline())
	r.Printf("Mempool %p size %d (%s)\n", p, len(b), p.cfg.name)
	dots := ""
	if start > 0 {
		dots = "... "
	}
	r.Printf(" nr=%d @ %p: %s0x", nr, unsafe.SliceData(b), dots)
	for _, c := range b[start:end] {
		r.Printf("%x ", c)
	}
	if end < len(b) {
		r.Printf("...")
	}
	r.Printf("\n")
	r.Dump()
	krules.Emit(r.Report())
}

// reportBadFree warns about a free the pool cannot accept.
func (p *Pool[T]) reportBadFree(why string) {
	krules.Emit(krules.Warn(krules.MempoolMisuse, fmt.Sprintf("mempool_free(%s): %s", p.cfg.name, why), 1))
}

// reportDeadlock reports a goroutine that has waited a whole timeout for an
// element while holding elements of the same pool: if every element is held
// by such a waiter, no Free will ever come.
func (p *Pool[T]) reportDeadlock(held []string) {
	r := krules.NewReport(krules.MempoolDeadlock, "WARNING: possible mempool deadlock detected", 1)
	r.Header()
	r.Printf("%s is waiting for an element of mempool %s (min_nr %d, none in reserve)\n",
		r.Who(), p.cfg.name, p.minNr.Load())
	r.Printf("while holding %d of its elements:\n", len(held))
	for i, site := range held {
		r.Printf(" #%d: allocated at: %s\n", i, site)
	}
	r.Printf("\nother info that might help us debug this:\n")
	r.Printf(" A mempool guarantees progress only if every element taken comes back\n")
	r.Printf(" without needing a second element of the same pool. Once every element\n")
	r.Printf(" is held by a goroutine waiting for another one, no free will come.\n\n")
	r.HeldLocks()
	r.Printf("\n")
	r.Backtrace()
	krules.Emit(r.Report())
}
