//go:build !krules_nolockdep

package mmnotifier_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
	"github.com/krules/krules/nonblock"
)

// lockingNotifier takes its driver lock in every start, as most drivers do.
type lockingNotifier struct{ mu *lockclass.Mutex }

func (n lockingNotifier) InvalidateRangeStart(*mmnotifier.Range) error {
	n.mu.Lock()
	n.mu.Unlock()
	return nil
}

// lockingInterval takes the driver lock in its interval callback.
type lockingInterval struct{ mu *lockclass.Mutex }

func (n lockingInterval) Invalidate(sub *mmnotifier.IntervalNotifier, _ *mmnotifier.Range, cur uint64) bool {
	n.mu.Lock()
	sub.SetSeq(cur)
	n.mu.Unlock()
	return true
}

// allocUnder allocates with GFP_KERNEL while holding mu, with no memory
// pressure at all.
func allocUnder(t *testing.T, mm *mmnotifier.MM, mu *lockclass.Mutex) {
	mu.Lock()
	b, err := mm.Zone().Alloc(64, gfp.Kernel)
	mu.Unlock()
	require.NoError(t, err)
	mm.Zone().Free(b)
}

func requireCircular(t *testing.T, rec interface{ Reports() []*krules.Report }, locks ...string) *krules.Report {
	t.Helper()
	reps := rec.Reports()
	require.Len(t, reps, 1)
	r := reps[0]
	require.Equal(t, krules.CircularDependency, r.Kind, r.Text)
	for _, l := range locks {
		require.Contains(t, r.Text, "("+l+")", r.Text)
	}
	return r
}

func TestCallbackLockHeldAcrossAllocationIsACycle(t *testing.T) {
	for _, order := range []string{"allocation first", "callback first"} {
		for _, kind := range []string{"list", "interval"} {
			t.Run(order+", "+kind, func(t *testing.T) {
				rec := krulestest.Record(t)
				mm := newMM(t)
				mu := driverLock()
				if kind == "list" {
					_, err := mmnotifier.Register(mm, lockingNotifier{mu})
					require.NoError(t, err)
				} else {
					sub, err := mmnotifier.InsertInterval(mm, 0, 1<<40, lockingInterval{mu})
					require.NoError(t, err)
					t.Cleanup(sub.Remove)
				}
				addr := mapTouched(t, mm, 1)
				if order == "allocation first" {
					allocUnder(t, mm, mu)
					require.Empty(t, rec.Reports())
					require.NoError(t, mm.Discard(addr, pg))
				} else {
					require.NoError(t, mm.Discard(addr, pg))
					require.Empty(t, rec.Reports())
					allocUnder(t, mm, mu)
				}
				requireCircular(t, rec, "&drv->lock", "mmu_notifier_invalidate_range_start", "fs_reclaim")
			})
		}
	}
}

func TestInvalidationWithoutNotifiersStillOrdersTheCallersLocks(t *testing.T) {
	rec := krulestest.Record(t)
	quiet, busy := newMM(t), newMM(t)
	mu := driverLock()
	_, err := mmnotifier.Register(busy, lockingNotifier{mu})
	require.NoError(t, err)

	mu.Lock() // an invalidation of an address space with no notifier, under mu
	r := mmnotifier.NewRange(quiet, mmnotifier.EventUnmap, 0, pg)
	quiet.MmapLock().RLock()
	mmnotifier.InvalidateRangeStart(&r)
	mmnotifier.InvalidateRangeEnd(&r)
	quiet.MmapLock().RUnlock()
	mu.Unlock()
	require.Empty(t, rec.Reports())

	addr := mapTouched(t, busy, 1)
	require.NoError(t, busy.Discard(addr, pg))
	requireCircular(t, rec, "&drv->lock", "mmu_notifier_invalidate_range_start")
}

func TestReadBeginUnderTheDriverLockIsACycle(t *testing.T) {
	rec := krulestest.Record(t)
	mm := newMM(t)
	mu := driverLock()
	sub, err := mmnotifier.InsertInterval(mm, 0, 1<<40, lockingInterval{mu})
	require.NoError(t, err)
	t.Cleanup(sub.Remove)
	addr := mapTouched(t, mm, 1)
	require.NoError(t, mm.Discard(addr, pg))
	mu.Lock()
	sub.ReadBegin() // may wait for the callback that needs mu
	mu.Unlock()
	requireCircular(t, rec, "&drv->lock", "mmu_notifier_invalidate_range_start")
}

func TestUnregisterFromACallbackIsReportedAndDoesNotHang(t *testing.T) {
	rec := krulestest.Record(t)
	mm := newMM(t)
	var sub *mmnotifier.Subscription
	f := &mmnotifier.Funcs{Start: func(*mmnotifier.Range) error {
		if sub != nil {
			s := sub
			sub = nil
			s.Unregister()
		}
		return nil
	}}
	sub, err := mmnotifier.Register(mm, f.Notifier())
	require.NoError(t, err)
	addr := mapTouched(t, mm, 1)
	require.NoError(t, mm.Discard(addr, pg))
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "(mmu_notifier_invalidate_range_start)")
	require.NoError(t, mm.Discard(addr, pg))
	require.EqualValues(t, 1, f.Counts().Starts, "unregistered all the same")
}

// Release runs in a read section of its own, outside any invalidation.
func TestUnregisterFromReleaseIsReportedAndDoesNotHang(t *testing.T) {
	rec := krulestest.Record(t)
	mm := newMM(t)
	var other *mmnotifier.Subscription
	f := &mmnotifier.Funcs{Release: func(*mmnotifier.MM) { other.Unregister() }}
	_, err := mmnotifier.Register(mm, f.Notifier())
	require.NoError(t, err)
	other, err = mmnotifier.Register(mm, (&mmnotifier.Funcs{}).Notifier())
	require.NoError(t, err)
	mm.Exit()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "(srcu)")
}

func TestLockHeldAcrossUnregisterThatReleaseTakesIsACycle(t *testing.T) {
	rec := krulestest.Record(t)
	mm := newMM(t)
	mu := driverLock()
	f := &mmnotifier.Funcs{Release: func(*mmnotifier.MM) { mu.Lock(); mu.Unlock() }}
	sub, err := mmnotifier.Register(mm, f.Notifier())
	require.NoError(t, err)
	other, err := mmnotifier.Register(mm, (&mmnotifier.Funcs{}).Notifier())
	require.NoError(t, err)
	sub.Unregister() // Release takes mu under srcu
	require.Empty(t, rec.Reports())
	mu.Lock()
	other.Unregister()
	mu.Unlock()
	r := requireCircular(t, rec, "&drv->lock", "srcu")
	require.Contains(t, r.Text, "  sync(srcu);")
}

func TestLockHeldAcrossUnregisterThatCallbacksTakeIsACycle(t *testing.T) {
	rec := krulestest.Record(t)
	mm := newMM(t)
	mu := driverLock()
	sub, err := mmnotifier.Register(mm, lockingNotifier{mu})
	require.NoError(t, err)
	addr := mapTouched(t, mm, 1)
	require.NoError(t, mm.Discard(addr, pg))
	mu.Lock()
	sub.Unregister() // waits for callbacks, which take mu
	mu.Unlock()
	requireCircular(t, rec, "&drv->lock", "mmu_notifier_invalidate_range_start")
}

func TestRemoveFromIntervalCallbackIsReportedAndDoesNotHang(t *testing.T) {
	rec := krulestest.Record(t)
	mm := newMM(t)
	var sub *mmnotifier.IntervalNotifier
	calls := 0
	ops := intervalFunc(func(s *mmnotifier.IntervalNotifier, _ *mmnotifier.Range, cur uint64) bool {
		calls++
		s.SetSeq(cur)
		if sub != nil {
			sub = nil
			s.Remove()
		}
		return true
	})
	sub, err := mmnotifier.InsertInterval(mm, 0, 1<<40, ops)
	require.NoError(t, err)
	addr := mapTouched(t, mm, 1)
	require.NoError(t, mm.Discard(addr, pg))
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "(mmu_notifier_invalidate_range_start)")
	require.NoError(t, mm.Discard(addr, pg))
	require.Equal(t, 1, calls, "removed when the invalidation ended")
}

type intervalFunc func(*mmnotifier.IntervalNotifier, *mmnotifier.Range, uint64) bool

func (f intervalFunc) Invalidate(s *mmnotifier.IntervalNotifier, r *mmnotifier.Range, cur uint64) bool {
	return f(s, r, cur)
}

// deps returns the direct dependencies of class name in the default
// validator's /proc/lockdep view.
func deps(t *testing.T, name string) []string {
	var b strings.Builder
	require.NoError(t, lockclass.Default().WriteClasses(&b))
	var out []string
	in := false
	for _, line := range strings.Split(b.String(), "\n") {
		switch {
		case strings.HasSuffix(line, ": "+name):
			in = true
		case in && strings.HasPrefix(line, " -> ["):
			out = append(out, line[strings.Index(line, "] ")+2:])
		case line == "":
			in = false
		}
	}
	return out
}

// __mmu_notifier_register's first registration on an address space
// kzallocs the subscriptions with GFP_KERNEL under mmap_lock: it orders
// mmap_lock before fs_reclaim and reclaim before the notifier map, without
// PrimeLockdep.
func TestTheFirstRegistrationAllocatesUnderMmapLock(t *testing.T) {
	krulestest.Check(t)
	mm := newMM(t)
	_, err := mmnotifier.Register(mm, (&mmnotifier.Funcs{}).Notifier())
	require.NoError(t, err)
	require.Contains(t, deps(t, "&mm->mmap_lock"), "fs_reclaim")
	require.Equal(t, []string{"mmu_notifier_invalidate_range_start"}, deps(t, "fs_reclaim"))
}

// Priming at registration takes fs_reclaim and, inside it, the notifier
// map, as v5.4–v5.10 kernels did, ordering the registering context before
// reclaim and reclaim before every callback. (Since v5.11 the first
// registration's GFP_KERNEL allocation records the same; a later one does
// not.)
func TestPrimeLockdepOrdersReclaimBeforeTheNotifierMap(t *testing.T) {
	for _, prime := range []bool{false, true} {
		t.Run(map[bool]string{false: "modern", true: "primed"}[prime], func(t *testing.T) {
			krulestest.Check(t)
			mm := newMM(t)
			_, err := mmnotifier.Register(mm, (&mmnotifier.Funcs{}).Notifier())
			require.NoError(t, err)
			krulestest.ResetDefault(t) // the subscriptions exist; the graph is empty
			var opts []mmnotifier.RegisterOption
			if prime {
				opts = append(opts, mmnotifier.PrimeLockdep())
			}
			_, err = mmnotifier.Register(mm, (&mmnotifier.Funcs{}).Notifier(), opts...)
			require.NoError(t, err)
			if prime {
				require.Equal(t, []string{"mmu_notifier_invalidate_range_start"}, deps(t, "fs_reclaim"))
				require.Contains(t, deps(t, "&mm->mmap_lock"), "fs_reclaim")
			} else {
				require.Empty(t, deps(t, "fs_reclaim"))
				require.NotContains(t, deps(t, "&mm->mmap_lock"), "fs_reclaim")
			}
		})
	}
}

// Real reclaim runs the address space's shrinker holding fs_reclaim: the
// callback's lock is ordered after it, and an allocation under that lock
// closes the cycle.
func TestReclaimInvalidatesAndOrdersCallbackLocksAfterFSReclaim(t *testing.T) {
	rec := krulestest.Record(t)
	mm := newMM(t)
	mu := driverLock()
	f := &mmnotifier.Funcs{Start: func(r *mmnotifier.Range) error {
		require.Equal(t, mmnotifier.EventClear, r.Event)
		require.True(t, r.Blockable())
		mu.Lock()
		mu.Unlock()
		return nil
	}}
	_, err := mmnotifier.Register(mm, f.Notifier())
	require.NoError(t, err)
	mapTouched(t, mm, 64)
	// Age the pages: reclaim gives young pages a second chance.
	require.True(t, mm.ClearFlushYoung(0, ^uint64(0)))
	freed := mm.Zone().Reclaim(32, gfp.Kernel)
	require.GreaterOrEqual(t, freed, int64(32))
	require.EqualValues(t, 64-freed, mm.RSS())
	require.Positive(t, f.Counts().Starts)
	require.Empty(t, rec.Reports())
	allocUnder(t, mm, mu)
	requireCircular(t, rec, "&drv->lock", "fs_reclaim")
}

// The sleeping lock's might-sleep check belongs to the validator's
// lookup, so this test needs it too.
func TestNonBlockableCallbackThatSleepsIsReported(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	mm := newMM(t)
	d := &mlxLike{}
	d.mu.Init(lockclass.WithName("&dev->notifier_lock"))
	_, err := mmnotifier.Register(mm, d)
	require.NoError(t, err)
	mapTouched(t, mm, 4)

	res := mm.OOMReap(context.Background())
	require.True(t, res.Reaped)
	require.Equal(t, 1, res.Tries)
	require.EqualValues(t, 4, res.Freed)
	require.Zero(t, mm.RSS())
	require.True(t, mm.Reaped())

	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	r := rec.Last()
	require.True(t, strings.HasPrefix(r.Headline, "BUG: sleeping function called from invalid context at mmnotifier/oom_test.go:"), r.Headline)
	require.Contains(t, r.Text, "in_atomic(): 0, irqs_disabled(): 0, non_block: 1, pid: ")
	require.Contains(t, r.Text, "name: oom_reaper")
	require.Equal(t, "oom_reaper", r.Goroutine.Name)
	require.Contains(t, r.Text, "(mmu_notifier_invalidate_range_start)", "the notifier map is held")
}

// With priming, a driver that registers under a lock its shrinker also
// takes is told at registration: registering orders the lock before
// fs_reclaim, and reclaim already ordered fs_reclaim before the lock.
func TestPrimeLockdepReportsAtRegistration(t *testing.T) {
	for _, prime := range []bool{false, true} {
		t.Run(map[bool]string{false: "modern", true: "primed"}[prime], func(t *testing.T) {
			rec := krulestest.Record(t)
			mm := newMM(t)
			_, err := mmnotifier.Register(mm, (&mmnotifier.Funcs{}).Notifier())
			require.NoError(t, err)
			krulestest.ResetDefault(t) // the subscriptions exist; the graph is empty
			mu := driverLock()
			scanned := false
			s := &gfp.Shrinker{
				Name:  "drv",
				Count: func(*gfp.ShrinkControl) uint64 { return 1000 },
				Scan: func(*gfp.ShrinkControl) uint64 {
					scanned = true
					mu.Lock()
					defer mu.Unlock()
					return gfp.ShrinkStop
				},
			}
			require.NoError(t, mm.Zone().RegisterShrinker(s))
			defer mm.Zone().UnregisterShrinker(s)
			mm.Zone().Reclaim(1, gfp.Kernel) // fs_reclaim -> &drv->lock
			require.True(t, scanned)
			require.Empty(t, rec.Reports())

			var opts []mmnotifier.RegisterOption
			if prime {
				opts = append(opts, mmnotifier.PrimeLockdep())
			}
			mu.Lock()
			_, err = mmnotifier.Register(mm, (&mmnotifier.Funcs{}).Notifier(), opts...)
			mu.Unlock()
			require.NoError(t, err)
			if prime {
				requireCircular(t, rec, "&drv->lock", "fs_reclaim")
			} else {
				require.Empty(t, rec.Reports(), "nothing until the driver allocates under its lock")
			}
		})
	}
}

// A GFP_KERNEL allocation in a callback is the circular dependency between
// the notifier map and fs_reclaim, whenever the validator was last reset:
// before the registration, after it, or after the mapping was faulted in.
func TestAllocationInCallbackIsACycleWhateverTheReset(t *testing.T) {
	for _, when := range []string{"before register", "after register", "after fault"} {
		t.Run(when, func(t *testing.T) {
			rec := krulestest.Record(t)
			mm := newMM(t) // resets the default validator
			f := &mmnotifier.Funcs{Start: func(r *mmnotifier.Range) error {
				b, err := mm.Zone().Alloc(64, gfp.Kernel)
				if err == nil {
					mm.Zone().Free(b)
				}
				return nil
			}}
			_, err := mmnotifier.Register(mm, f.Notifier())
			require.NoError(t, err)
			if when == "after register" {
				krulestest.ResetDefault(t)
			}
			addr := mapTouched(t, mm, 1)
			if when == "after fault" {
				krulestest.ResetDefault(t)
			}
			require.Empty(t, rec.Reports())
			require.NoError(t, mm.Discard(addr, pg))
			requireCircular(t, rec, "mmu_notifier_invalidate_range_start", "fs_reclaim")
		})
	}
}

// hmm_range_fault asserts that mmap_lock is held (mmap_assert_locked): a
// walk without it is reported.
func TestHMMRangeFaultWithoutMmapLockIsReported(t *testing.T) {
	mm := newMM(t)
	rec := krulestest.Record(t)
	d := newMirror(t, mm)
	addr := mapTouched(t, mm, 1)
	r := mmnotifier.HMMRange{Notifier: d.sub, Start: addr, End: addr + pg, PFNs: make([]uint64, 1)}
	r.NotifierSeq = d.sub.ReadBegin()
	require.NoError(t, mmnotifier.HMMRangeFault(&r))
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "lockdep_assert_held(&mm->mmap_lock): lock not held")
}

// sleepyYoung is a notifier whose clear_flush_young and test_young
// callbacks may sleep.
type sleepyYoung struct{}

func (sleepyYoung) InvalidateRangeStart(*mmnotifier.Range) error { return nil }
func (sleepyYoung) ClearFlushYoung(*mmnotifier.MM, uint64, uint64) bool {
	nonblock.MightSleep()
	return false
}

func (sleepyYoung) TestYoung(*mmnotifier.MM, uint64) bool {
	nonblock.MightSleep()
	return false
}

// The young callbacks run under the page-table lock, a spin lock: one that
// may sleep is reported.
func TestYoungCallbacksMayNotSleep(t *testing.T) {
	mm := newMM(t)
	_, err := mmnotifier.Register(mm, sleepyYoung{})
	require.NoError(t, err)
	addr := mapTouched(t, mm, 1)
	rec := krulestest.Record(t)
	mm.ClearFlushYoung(addr, addr+pg)
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
	// The accessed bit is clear now, so TestYoung asks the notifier, under
	// the page-table lock too, as khugepaged's scan does.
	require.False(t, mm.TestYoung(addr))
	require.Equal(t, []krules.Kind{krules.SleepInAtomic, krules.SleepInAtomic}, rec.Kinds())
}

// FaultLocked is handle_mm_fault under the caller's mmap_lock, as
// make_device_exclusive_range needs it; Fault there would take the lock a
// second time, which lockdep reports (and which deadlocks once a writer
// queues in between).
func TestFaultLockedUnderTheCallersMmapLock(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	mm := newMM(t)
	a, err := mm.Mmap(2*pg, mmnotifier.ProtReadWrite)
	require.NoError(t, err)

	mm.MmapLock().RLock()
	pfn, err := mm.FaultLocked(a, true)
	mm.MmapLock().RUnlock()
	require.NoError(t, err)
	got, ok := mm.Lookup(a)
	require.True(t, ok)
	require.Equal(t, pfn, got)
	_, err = mm.FaultLocked(a+2*pg, false) // the lockdep_assert_held warns, the fault fails on no mapping
	require.ErrorIs(t, err, mmnotifier.ErrFault)
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "lockdep_assert_held(&mm->mmap_lock): lock not held")

	rec.Clear()
	mm.MmapLock().RLock()
	_, err = mm.Fault(a+pg, false)
	mm.MmapLock().RUnlock()
	require.NoError(t, err)
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
}
