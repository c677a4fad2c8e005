package mmnotifier

import (
	"fmt"
	"sync/atomic"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/nonblock"
)

// MM is an address space (struct mm_struct): mapped ranges (VMAs) whose
// pages come from a gfp.Zone on first touch, its mmap_lock, its page-table
// lock, two reference counts, and the MMU notifiers registered on it.
//
// The operations that change mappings fire the notifiers exactly where the
// kernel's do: Unmap (munmap, MMU_NOTIFY_UNMAP), Protect (mprotect,
// PROTECTION_VMA), Discard (madvise(MADV_DONTNEED), CLEAR), Migrate
// (migrate_vma, MIGRATE with an owner), ClearSoftDirty (clear_refs,
// SOFT_DIRTY), OOMReap (the OOM reaper, non-blockable UNMAP), the zone's
// reclaim (a shrinker that unmaps pages, CLEAR) and Exit (RELEASE, then
// UNMAP). Pages are freed only after the invalidation's end, as
// tlb_finish_mmu frees them.
//
// Reference counts: Users (mm_users, Get/GetNotZero/Put) keep the mappings
// alive; the last Put, normally Exit, tears them down. Registered notifiers
// pin the structure itself (mm_count) until they are unregistered.
//
// An MM is safe for concurrent use. Unmap, Protect and ClearSoftDirty take
// mmap_lock for writing and so run one at a time; Discard, Migrate, Fault,
// Read and Write take it for reading and run in parallel.
type MM struct {
	_        noCopy
	mmapLock lockclass.RWSem    // &mm->mmap_lock
	ptl      lockclass.SpinLock // &mm->page_table_lock
	zone     *gfp.Zone
	subs     atomic.Pointer[subscriptions] // notifier_subscriptions
	users    atomic.Int32                  // mm_users
	count    atomic.Int32                  // mm_count
	flags    atomic.Uint32                 // MMF_* bits
	pid      int64
	comm     string

	// vmas is sorted by start; the slice and the VMAs' bounds and
	// protections change under mmap_lock held for writing; their page
	// table entries under the page-table lock.
	vmas []*VMA
	// vmOps holds the operations of the VMAs that have them (mmap_lock
	// held for writing).
	vmOps    map[*VMA]VMOps
	pt       pageTable    // page-table lock
	rss      atomic.Int64 // resident pages
	shrinker *gfp.Shrinker
	// reclaimCursor is where the shrinker's clock hand stands
	// (page-table lock).
	reclaimCursor uint64
	// proc is the real memory behind the address space, if NewProcess
	// made it; HMMRangeFault faults that instead of the modelled VMAs.
	proc *Process
}

// MMF_* flags.
const (
	mmfUnstable = 1 << iota // MMF_UNSTABLE: the OOM reaper has torn pages out
	mmfOOMSkip              // MMF_OOM_SKIP: reaped, or being torn down
)

// Option configures NewMM.
type Option func(*mmConfig)

type mmConfig struct {
	zone      *gfp.Zone
	pid       int64
	comm      string
	noReclaim bool
}

// WithZone takes the address space's pages from z instead of the default
// zone (gfp.Default()).
func WithZone(z *gfp.Zone) Option { return func(c *mmConfig) { c.zone = z } }

// WithTask names the task that owns the address space, for the OOM
// reaper's messages ("pid:17 (victim)"). By default it is the goroutine
// that called NewMM.
func WithTask(pid int64, comm string) Option {
	return func(c *mmConfig) { c.pid, c.comm = pid, comm }
}

// WithoutReclaim keeps the address space's pages out of reclaim: no
// shrinker is registered for it on its zone.
func WithoutReclaim() Option { return func(c *mmConfig) { c.noReclaim = true } }

// NewMM returns an empty address space with one user (mm_alloc), whose
// pages come from the default zone unless WithZone says otherwise. Unless
// WithoutReclaim is given, it registers a shrinker on the zone that unmaps
// its pages under memory pressure, so that reclaim fires its notifiers.
// Exit drops the user reference and tears the address space down.
func NewMM(opts ...Option) *MM {
	cfg := mmConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.zone == nil {
		cfg.zone = gfp.Default()
	}
	if cfg.comm == "" {
		g := krules.CurrentGoroutine()
		cfg.pid, cfg.comm = g.ID, g.Name
	}
	mm := &MM{zone: cfg.zone, pid: cfg.pid, comm: cfg.comm}
	mm.mmapLock.Init(lockclass.WithName("&mm->mmap_lock"))
	mm.ptl.Init(lockclass.WithName("&mm->page_table_lock"))
	mm.users.Store(1)
	mm.count.Store(1) // held by the users, dropped after the last one
	if !cfg.noReclaim {
		mm.registerShrinker()
	}
	return mm
}

// MmapLock returns the address space's mmap_lock, for code that calls
// HMMRangeFault, InvalidateRangeStart or the *Locked functions, which need
// it held, as the kernel's do.
func (mm *MM) MmapLock() *lockclass.RWSem { return &mm.mmapLock }

// Zone returns the zone the address space's pages come from.
func (mm *MM) Zone() *gfp.Zone { return mm.zone }

// String returns "pid:17 (comm)".
func (mm *MM) String() string { return fmt.Sprintf("pid:%d (%s)", mm.pid, mm.comm) }

// Users returns mm_users.
func (mm *MM) Users() int { return int(mm.users.Load()) }

// RSS returns the number of resident pages.
func (mm *MM) RSS() int64 { return mm.rss.Load() }

// Get takes a user reference (mmget); the caller must already hold one.
func (mm *MM) Get() { mm.users.Add(1) }

// GetNotZero takes a user reference unless the address space has no users
// left, and reports whether it did: mmget_not_zero, the way a driver pins
// an address space it only has a pointer to.
func (mm *MM) GetNotZero() bool {
	for {
		n := mm.users.Load()
		if n <= 0 {
			return false
		}
		if mm.users.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Put drops a user reference (mmput). The last one tears the address space
// down as exit_mmap does: notifiers get Release (and interval notifiers a
// RELEASE invalidation), every page is unmapped with a final UNMAP
// invalidation and freed, and the shrinker is unregistered. It may sleep,
// and says so whether or not it drops the last user, as mmput's
// might_sleep comes before its atomic_dec_and_test (kernel/fork.c).
func (mm *MM) Put() {
	nonblock.MightSleep()
	switch n := mm.users.Add(-1); {
	case n == 0:
		mm.exitMmap()
		mm.drop()
	case n < 0:
		mm.users.Add(1)
		krules.Emit(krules.Warn(krules.NotifierMisuse, "mmput: mm_users underflow on "+mm.String(), 0))
	}
}

// Exit is the owning task's exit (exit_mm): it drops the user reference
// NewMM gave, which tears the address space down once no other user holds
// one.
func (mm *MM) Exit() { mm.Put() }

// grab pins the structure (mmgrab).
func (mm *MM) grab() { mm.count.Add(1) }

// drop releases a pin (mmdrop). At zero the subscriptions go, which must
// have no notifiers left by then.
func (mm *MM) drop() {
	if mm.count.Add(-1) != 0 {
		return
	}
	if s := mm.subs.Load(); s != nil && len(*s.list.Load()) != 0 {
		krules.Emit(krules.Bug(krules.NotifierMisuse,
			"BUG_ON(!hlist_empty(&subscriptions->list)): "+mm.String()+" freed with notifiers registered", 0))
		lockclass.TaintNowUnreliable()
	}
}

// exitMmap is exit_mmap: release the notifiers, then unmap everything.
// The unmap holds mmap_lock for reading only, as the kernel's does, so the
// OOM reaper's trylock may run alongside it; MMF_OOM_SKIP is set after it,
// outside the lock, and the VMAs go under the lock held for writing, which
// waits for a reaper that read the flag too early. The pages are freed
// before the VMAs with operations get Close, in address order with the
// lock held for writing, as exit_mmap's tlb_finish_mmu comes before its
// remove_vma walk.
func (mm *MM) exitMmap() {
	if s := mm.subs.Load(); s != nil {
		s.release(mm)
	}
	mm.mmapLock.RLock()
	var freed []*gfp.Page
	unmapped := len(mm.vmas) != 0
	if unmapped {
		r := NewRange(mm, EventUnmap, 0, ^uint64(0))
		InvalidateRangeStart(&r)
		mm.ptl.Lock()
		freed = mm.zap(nil, 0, ^uint64(0))
		mm.ptl.Unlock()
		InvalidateRangeEnd(&r)
	}
	mm.mmapLock.RUnlock()
	if unmapped { // with no VMA, exit_mmap goes straight to destroy
		mm.flags.Or(mmfOOMSkip)
	}
	mm.freePages(freed)
	mm.mmapLock.Lock()
	vmas := mm.vmas
	mm.vmas = nil
	mm.closeVMAs(vmas)
	mm.mmapLock.Unlock()
	if mm.shrinker != nil {
		mm.zone.UnregisterShrinker(mm.shrinker)
	}
}

// noCopy makes go vet's copylocks check flag copies.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
