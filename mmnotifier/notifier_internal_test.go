package mmnotifier

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
)

type countAlloc struct{ made int }

type plainNotifier struct{}

func (plainNotifier) InvalidateRangeStart(*Range) error { return nil }

func (a *countAlloc) AllocNotifier(*MM) (Notifier, error) { a.made++; return plainNotifier{}, nil }
func (a *countAlloc) FreeNotifier(Notifier)               {}

// mmu_notifier_get never hands out a notifier whose last mmu_notifier_put
// has run: the kernel unhashes it under the lock that dropped its last
// user; krules unhashes it just after, and find_get skips it meanwhile, so
// Get makes a new one.
func TestGetSkipsANotifierWhoseLastPutIsUnderway(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	a := &countAlloc{}
	s, err := Get(mm, a)
	require.NoError(t, err)
	subs := mm.subs.Load()
	subs.lock.Lock()
	s.users = 0 // the last Put, before its unhash
	subs.lock.Unlock()
	t2, err := Get(mm, a)
	require.NoError(t, err)
	require.NotSame(t, s, t2)
	require.Equal(t, 2, a.made)
	s.users = 1
	s.Put()
	t2.Put()
	Synchronize()
}

// find_get_mmu_notifier counts users up to UINT_MAX and refuses one more
// with -EOVERFLOW, leaving the count as it was.
func TestGetCountsUsersUpToUintMax(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	a := &countAlloc{}
	s, err := Get(mm, a)
	require.NoError(t, err)
	subs := mm.subs.Load()
	subs.lock.Lock()
	s.users = math.MaxUint32 - 1
	subs.lock.Unlock()
	again, err := Get(mm, a)
	require.NoError(t, err)
	require.Same(t, s, again)
	_, err = Get(mm, a)
	require.ErrorIs(t, err, ErrOverflow)
	require.Equal(t, uint32(math.MaxUint32), s.users)
	require.Equal(t, 1, a.made)
	s.users = 1
	s.Put()
	Synchronize()
}

// __mmu_notifier_subscriptions_destroy: freeing the structure (mm_count at
// zero) with a notifier still on the list is a BUG_ON. Only a broken
// reference count gets there, so the test breaks it.
func TestAddressSpaceFreedWithNotifiersIsReported(t *testing.T) {
	krulestest.ResetDefault(t) // the BUG_ON's oops turns lock debugging off
	mm := testMM(t)
	rec := krulestest.Record(t)
	sub, err := Register(mm, plainNotifier{})
	require.NoError(t, err)
	mm.drop() // the user's pin
	mm.drop() // the registration's, which Unregister should have dropped
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "BUG_ON(!hlist_empty(&subscriptions->list))")
	mm.count.Store(2) // mended, for Unregister and the test's Exit
	sub.Unregister()
}

// mmu_notifier_register pins the structure (mmgrab) and
// mmu_notifier_unregister drops that pin (mmdrop) after the grace period:
// exactly one each, or the address space is freed under a notifier or never.
func TestRegisterPinsTheAddressSpaceOnceAndUnregisterUnpinsIt(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	require.Equal(t, int32(1), mm.count.Load(), "the users' pin")
	sub, err := Register(mm, plainNotifier{})
	require.NoError(t, err)
	require.Equal(t, int32(2), mm.count.Load())
	sub.Unregister()
	require.Equal(t, int32(1), mm.count.Load())
}

// mmu_notifier_unregister's BUG_ON(atomic_read(&mm->mm_count) <= 0): an
// unregistration that finds the structure unpinned. Only a broken reference
// count gets there, so the test breaks it: at zero, not only below.
func TestUnregisterOfAnUnpinnedAddressSpaceIsReported(t *testing.T) {
	krulestest.ResetDefault(t) // the BUG_ON's oops turns lock debugging off
	mm := testMM(t)
	rec := krulestest.Record(t)
	sub, err := Register(mm, plainNotifier{})
	require.NoError(t, err)
	mm.count.Store(0)
	sub.Unregister()
	require.Equal(t, []krules.Kind{krules.NotifierMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "BUG_ON(atomic_read(&mm->mm_count) <= 0)")
	mm.count.Store(1) // mended, for the test's Exit
}

// The kernel edits the notifier list under subscriptions->lock; modifyList
// copies it outside the lock (a spin lock, where allocating is not
// allowed), so an edit made from a list that changed meanwhile is made
// again, from the new list, rather than lose the other change.
func TestListEditFromAStaleListIsMadeAgain(t *testing.T) {
	krulestest.Check(t)
	mm := testMM(t)
	a, err := Register(mm, plainNotifier{})
	require.NoError(t, err)
	subs := mm.subs.Load()
	var b *Subscription
	edits := 0
	subs.modifyList(func(list []*Subscription) []*Subscription {
		if edits++; edits == 1 {
			b, err = Register(mm, plainNotifier{}) // lands meanwhile
			require.NoError(t, err)
		}
		return slices.DeleteFunc(slices.Clone(list), func(x *Subscription) bool { return x == a })
	}, func([]*Subscription) { a.hashed.Store(false) })
	require.Equal(t, 2, edits)
	require.Equal(t, []*Subscription{b}, *subs.list.Load())
	a.Unregister()
	b.Unregister()
}

// A grace period waits for the readers of every counter shard, whichever
// one a reader's stack address picked.
func TestGracePeriodWaitsForEveryShard(t *testing.T) {
	Synchronize() // nothing of an earlier test still running
	for _, i := range []int{0, srcuShards / 2, srcuShards - 1} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := &srcu.shards[i].readers[srcu.epoch.Load()&1]
			c.Add(1) // a reader in shard i
			done := make(chan struct{})
			go func() {
				srcu.synchronize()
				close(done)
			}()
			waited := true
			select {
			case <-done:
				waited = false
			case <-time.After(20 * time.Millisecond):
			}
			srcu.walkUnlock(c)
			<-done
			require.True(t, waited, "the grace period ended while a reader of shard %d ran", i)
		})
	}
}
