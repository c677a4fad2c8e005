package lockclass

import (
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/krules/krules"
	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
	"github.com/krules/krules/nonblock"
)

// SeqCount is the kernel's seqcount_t and seqcount_LOCKNAME_t
// (include/linux/seqlock.h): a sequence that is even while the data it
// guards is stable and odd while a writer changes it. Readers never block
// writers: they take ReadBegin's sequence, read, and retry while ReadRetry
// says a write overlapped.
//
// Init associates the lock that serialises writers (seqcount_mutex_t,
// seqcount_spinlock_t, ... : the kernel's seqcount_LOCKNAME_init); WriteBegin
// then asserts that it is held (lockdep_assert_held: "lockdep_assert_held(…):
// lock not held" when it is not, and the write goes ahead). A write section
// runs with preemption disabled: WriteBegin enters an atomic section itself
// when the associated lock is a sleeping one (Mutex, RWSem), as
// seqprop_preemptible does; with a spinning lock the lock's own section
// serves; with no lock (plain seqcount_t) the caller must be in one, and
// WriteBegin warns otherwise (lockdep_assert_preemption_disabled: once,
// and only while validation is on).
//
// Lockdep: the seqcount's own map is taken exclusively by WriteBegin
// (seqcount_acquire) and for recursive read, then released, by ReadBegin
// (seqcount_acquire_read), so a reader inside the same seqcount's write
// section is "WARNING: possible recursive locking detected"; ReadBegin then
// returns at once instead of spinning on itself forever.
//
// The zero value is a plain seqcount_t keyed by the site of its first use. A
// SeqCount must not be copied after first use.
type SeqCount struct {
	_    noCopy
	seq  atomic.Uint32
	lock Lockable
	// atomic says WriteBegin entered an atomic section WriteEnd leaves.
	atomic bool
	dep    Map
}

func (s *SeqCount) lockdepMap() *Map { return &s.dep }

// Init (re)initialises the seqcount, associated with lock (nil for a plain
// seqcount_t): seqcount_init, seqcount_LOCKNAME_init.
//
//go:noinline
func (s *SeqCount) Init(lock Lockable, opts ...Option) {
	pc := stack.ReturnPC()
	CheckNoLocksFreed(unsafe.Pointer(s), unsafe.Sizeof(*s))
	s.lock = lock
	s.seq.Store(0)
	s.dep.init(pc, nil, opts)
}

// ReadBegin waits until no write is in progress and returns the sequence:
// read_seqcount_begin.
//
//go:noinline
func (s *SeqCount) ReadBegin() uint32 {
	id, pc := task.SiteID()
	return s.readBegin(&s.dep, id, pc, nil)
}

// readBegin is read_seqcount_begin for the reader annotated on m, the
// seqcount's map or a seqlock's lock, by goroutine id (0: unknown) at pc.
//
// The annotation is seqcount_lockdep_reader_access: m acquired for
// recursive read and released at once. When m's quick tier would take the
// acquisition (quickKey: the class current, the goroutine validating, the
// chain the one m's last cached acquisition made, so validated), it would
// push an entry with nothing to check and the release would pop it, so
// neither is made; lock_stat, which counts both, sends it the generic way.
// The record is only read: an idle node (task.PeekHead) reads as an empty
// stack with its chain key 0, as a missing record does. The generic way
// looked the record up three times (findHeld's, acquire's, the release's)
// to push and pop an entry: the bench figure "SeqCount read" went from 457
// to 138 instructions (cachegrind, loop included; atomic load 32) and from
// 39.6 to 13.0 ns (min of 10 runs, noisy; atomic load 4.4), on an AMD EPYC
// (Zen 3, KVM).
func (s *SeqCount) readBegin(m *Map, id int64, pc uintptr, defaults []Option) uint32 {
	if !compiledIn || !enabled.Load() {
		return s.readWait(m, false)
	}
	if t := task.PeekHead(id); t != nil { // 0, "unknown", heads no bucket
		if _, ok := quickKey(t, m, m.cache[0].Load(), 2, 0); ok {
			if !lockStat.Load() {
				return s.readWait(m, true)
			}
		}
	}
	readAnnotate(m, pc, defaults)
	return s.readWait(m, true)
}

// readAnnotate is seqcount_lockdep_reader_access the generic way.
//
//go:noinline
func readAnnotate(m *Map, pc uintptr, defaults []Option) {
	if t := acquire(m, 0, 2, 0, nil, pc, defaults); t != nil {
		release(m, t)
	}
}

// readWait waits until no write is in progress and returns the sequence;
// validated says that the read was annotated. Its common case, no write,
// is inlined.
func (s *SeqCount) readWait(m *Map, validated bool) uint32 {
	if v := s.seq.Load(); v&1 == 0 {
		return v
	}
	return s.readSpin(m, validated)
}

// readSpin is readWait with a write in progress, out of line so that
// readWait is inlined. A reader inside its own write section would spin
// forever; lockdep reported it (recursive locking) if the read was
// annotated, and readSpin then returns at once. Whether the caller holds m
// is looked up only now: the annotation left the held-lock stack as it
// found it.
//
//go:noinline
func (s *SeqCount) readSpin(m *Map, validated bool) uint32 {
	for i := 0; ; i++ {
		v := s.seq.Load()
		if v&1 == 0 {
			return v
		}
		if validated {
			if findHeld(task.Lookup(), m) >= 0 {
				return v // our own write section
			}
			validated = false
		}
		if i > 64 {
			runtime.Gosched()
		}
	}
}

// ReadRetry reports whether a write began or ended since ReadBegin returned
// start, so the read must be retried: read_seqcount_retry.
func (s *SeqCount) ReadRetry(start uint32) bool { return s.seq.Load() != start }

// Sequence returns the current sequence without waiting: raw_read_seqcount.
func (s *SeqCount) Sequence() uint32 { return s.seq.Load() }

// WriteBegin starts a write section: write_seqcount_begin. Writers must be
// serialised by the associated lock.
//
//go:noinline
func (s *SeqCount) WriteBegin() {
	pc := stack.ReturnPC()
	switch s.lock.(type) {
	case nil:
		// __seqprop_assert: lockdep_assert_preemption_disabled, a
		// WARN_ON_ONCE that holds only while lockdep looks
		// (__lockdep_enabled: debug_locks, and not inside Off).
		if !nonblock.InAtomic() && lockdepEnabled(task.Lookup(), &s.dep) && s.dep.graph().warnOnce("write_seqcount_begin") {
			emit(warnf(krules.LockdepMisuse, "lockdep_assert_preemption_disabled(): write_seqcount_begin with preemption enabled"))
		}
	case *Mutex, *RWSem:
		startAtomic(pc)
		s.atomic = true
	}
	if s.lock != nil {
		AssertHeld(s.lock)
	}
	acquire(&s.dep, 0, 0, 0, nil, pc, nil)
	s.seq.Add(1)
}

// WriteEnd ends the write section: write_seqcount_end.
func (s *SeqCount) WriteEnd() {
	s.seq.Add(1)
	releaseShared(&s.dep)
	if s.atomic {
		s.atomic = false
		nonblock.EndAtomic()
	}
}
