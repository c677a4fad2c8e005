//go:build !krules_nolockdep

package dmafence_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/mmnotifier"
)

func TestResvAddFenceUnlocked(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	r := dmafence.NewResv()
	require.NoError(t, r.Lock(nil))
	require.NoError(t, r.ReserveFences(1))
	r.Unlock()
	r.AddFence(dmafence.New(dmafence.ContextAlloc(1), 1), dmafence.UsageWrite)
	require.Equal(t, krules.LockdepMisuse, rec.Reports()[0].Kind)
	require.Contains(t, rec.Reports()[0].Text, "lockdep_assert_held(reservation_ww_class_mutex)")
}

// dma_resv_reserve_fences begins with dma_resv_assert_held: reserving
// room without the reservation lock is reported.
func TestResvReserveFencesUnlocked(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	r := dmafence.NewResv()
	require.NoError(t, r.ReserveFences(1))
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "lockdep_assert_held(reservation_ww_class_mutex)")
}

// The priming teaches mmap_lock -> reservation lock: taking mmap_lock
// under a reservation lock is reported the first time.
func TestResvPrimedMmapLock(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	r := dmafence.NewResv()
	mm := mmnotifier.NewMM(mmnotifier.WithoutReclaim())
	defer mm.Exit()
	require.NoError(t, r.Lock(nil))
	mm.MmapLock().RLock()
	mm.MmapLock().RUnlock()
	r.Unlock()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "reservation_ww_class_mutex")
	require.Contains(t, rec.Last().Text, "&mm->mmap_lock")
}

// Reset forgets the priming; the next Resv primes again, so the
// allocation in a signalling section is reported in each generation.
func TestResvPrimesAfterReset(t *testing.T) {
	rec := krulestest.Record(t)
	for range 2 {
		krulestest.ResetDefault(t)
		_ = dmafence.NewResv()
		c := dmafence.BeginSignalling()
		gfp.MightAlloc(gfp.Kernel)
		dmafence.EndSignalling(c)
		require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
		rec.Clear()
	}
}

// dma_resv_lock is a static inline around ww_mutex_lock, so lockdep's "at:"
// for a reservation names dma_resv_lock's caller; so does Resv.Lock's.
func TestResvLockSiteIsTheCaller(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	a, b := dmafence.NewResv(), dmafence.NewResv()
	require.NoError(t, a.Lock(nil))
	require.NoError(t, b.Lock(nil)) // two of one class without a ticket
	b.Unlock()
	a.Unlock()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	text := rec.Last().Text
	require.NotContains(t, text, "at: dmafence.(*Resv)")
	require.Contains(t, text, "(reservation_ww_class_mutex){+.+.}-{3:3}, at: dmafence_test.TestResvLockSiteIsTheCaller+")
}
