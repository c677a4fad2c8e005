package lockclass

import (
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/google/pprof/profile"
)

// The contention profile: lock_stat's waits by the waiter's stack, in
// pprof's format, so that go tool pprof shows where goroutines waited on
// krules locks. Go's own mutex and block profiles do not: these locks wait
// on channels, which the block profile files under selectgo.

const profileDepth = 32

// contentionProfile is a validator's records, by stack.
type contentionProfile struct {
	mu   sync.Mutex
	recs map[[profileDepth]uintptr]*contentionRecord
}

type contentionRecord struct {
	stk   [profileDepth]uintptr
	count atomic.Int64
	delay atomic.Int64 // nanoseconds
}

// contended counts a contention at the caller's stack (from the caller of
// the lock function) and returns its record, for the wait to be added.
func (p *contentionProfile) contended() *contentionRecord {
	var stk [profileDepth]uintptr
	// Callers, contended, statContended, then the lock path: a few frames
	// of lockclass stay, as the runtime's profiles keep sync.(*Mutex).Lock.
	runtime.Callers(3, stk[:])
	p.mu.Lock()
	if p.recs == nil {
		p.recs = make(map[[profileDepth]uintptr]*contentionRecord)
	}
	r := p.recs[stk]
	if r == nil {
		r = &contentionRecord{stk: stk}
		p.recs[stk] = r
	}
	p.mu.Unlock()
	r.count.Add(1)
	return r
}

func (r *contentionRecord) waited(ns int64) {
	if r != nil {
		r.delay.Add(ns)
	}
}

func (p *contentionProfile) clear() {
	p.mu.Lock()
	p.recs = nil
	p.mu.Unlock()
}

// ContentionProfile returns the waits on v's locks counted while lock_stat
// was on (SetLockStat) as a pprof profile: one sample per waiter stack,
// valued in contentions and in nanoseconds of waiting.
func (v *Validator) ContentionProfile() *profile.Profile {
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "contentions", Unit: "count"}, {Type: "delay", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "contentions", Unit: "count"},
		Period:     1,
	}
	if !compiledIn {
		return p
	}
	g := v.graph()
	g.prof.mu.Lock()
	recs := make([]*contentionRecord, 0, len(g.prof.recs))
	for _, r := range g.prof.recs {
		recs = append(recs, r)
	}
	g.prof.mu.Unlock()
	locs := map[uintptr]*profile.Location{}
	funcs := map[string]*profile.Function{}
	for _, r := range recs {
		s := &profile.Sample{Value: []int64{r.count.Load(), r.delay.Load()}}
		for _, pc := range r.stk {
			if pc == 0 {
				break
			}
			loc := locs[pc]
			if loc == nil {
				loc = &profile.Location{ID: uint64(len(p.Location) + 1), Address: uint64(pc)}
				frames := runtime.CallersFrames([]uintptr{pc})
				for {
					fr, more := frames.Next()
					fn := funcs[fr.Function]
					if fn == nil {
						fn = &profile.Function{ID: uint64(len(p.Function) + 1), Name: fr.Function, SystemName: fr.Function, Filename: fr.File}
						funcs[fr.Function] = fn
						p.Function = append(p.Function, fn)
					}
					loc.Line = append(loc.Line, profile.Line{Function: fn, Line: int64(fr.Line)})
					if !more {
						break
					}
				}
				locs[pc] = loc
				p.Location = append(p.Location, loc)
			}
			s.Location = append(s.Location, loc)
		}
		p.Sample = append(p.Sample, s)
	}
	return p
}

// WriteContentionProfile writes ContentionProfile in pprof's gzipped
// protobuf format, for go tool pprof.
func (v *Validator) WriteContentionProfile(w io.Writer) error {
	return v.ContentionProfile().Write(w)
}
