package lockclass

import (
	"unsafe"

	"github.com/krules/krules/internal/stack"
	"github.com/krules/krules/internal/task"
)

// SeqLock is the kernel's seqlock_t (include/linux/seqlock.h): a SeqCount
// and the SpinLock that serialises its writers. WriteLock/WriteUnlock are
// write_seqlock/write_sequnlock, ReadBegin/ReadRetry read_seqbegin/
// read_seqretry, ReadLockExcl/ReadUnlockExcl read_seqlock_excl (a reader
// that locks out writers, and other such readers, instead of retrying).
//
// Lockdep: the reader's annotation is a recursive read of the spin lock's
// map (the kernel annotates the embedded seqcount's own map), so a reader
// inside the writer's section is "WARNING: possible recursive locking
// detected" naming the seqlock's lock; one class per Init site serves both.
//
// Init (seqlock_init) keys the lock by its call site; the zero value is
// keyed by the site of its first use. A SeqLock must not be copied after
// first use.
type SeqLock struct {
	lock SpinLock
	seq  SeqCount
}

func (s *SeqLock) lockdepMap() *Map { return &s.lock.dep }

// Init (re)initialises the seqlock: seqlock_init.
//
//go:noinline
func (s *SeqLock) Init(opts ...Option) {
	pc := stack.ReturnPC()
	CheckNoLocksFreed(unsafe.Pointer(s), unsafe.Sizeof(*s))
	s.lock.dep.init(pc, spinDefaults, opts)
	s.seq.lock = &s.lock
	s.seq.seq.Store(0)
}

// WriteLock takes the lock and starts a write section: write_seqlock.
//
//go:noinline
func (s *SeqLock) WriteLock() {
	s.lock.lock(0, nil, stack.ReturnPC())
	s.seq.seq.Add(1)
}

// WriteUnlock ends the write section and drops the lock: write_sequnlock.
func (s *SeqLock) WriteUnlock() {
	s.seq.seq.Add(1)
	s.lock.Unlock()
}

// ReadBegin waits until no write is in progress and returns the sequence:
// read_seqbegin.
//
//go:noinline
func (s *SeqLock) ReadBegin() uint32 {
	id, pc := task.SiteID()
	return s.seq.readBegin(&s.lock.dep, id, pc, spinDefaults)
}

// ReadRetry reports whether the read that ReadBegin's start began must be
// retried: read_seqretry.
func (s *SeqLock) ReadRetry(start uint32) bool { return s.seq.ReadRetry(start) }

// ReadLockExcl takes the lock as a reader that excludes writers:
// read_seqlock_excl.
//
//go:noinline
func (s *SeqLock) ReadLockExcl() { s.lock.lock(0, nil, stack.ReturnPC()) }

// ReadUnlockExcl is read_sequnlock_excl.
func (s *SeqLock) ReadUnlockExcl() { s.lock.Unlock() }
