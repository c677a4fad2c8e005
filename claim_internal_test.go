package krules

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/internal/task"
)

// Opening a fallback claim replaces the previous one, which takes nothing
// more; closing the replaced one leaves the new one in place.
func TestOpeningAFallbackClaimReplacesThePreviousOne(t *testing.T) {
	unclaimed(t)
	old := OpenFallbackClaim(nil)
	fb := OpenFallbackClaim(nil)
	defer fb.Close()
	Emit(Warn(MempoolMisuse, "to the new fallback", 0))
	old.Close()
	Emit(Warn(MempoolMisuse, "still to the new fallback", 0))
	require.Zero(t, old.Len())
	require.Equal(t, 2, fb.Len())
}

// Reports returns a copy: what the caller does with it leaves the claim's
// reports alone.
func TestClaimReportsIsACopy(t *testing.T) {
	unclaimed(t)
	c := OpenClaim(nil)
	defer c.Close()
	Emit(Warn(MempoolMisuse, "kept", 0))
	got := c.Reports()
	got[0] = nil
	require.NotNil(t, c.Reports()[0])
	require.Same(t, c.Last(), c.Reports()[0])
}

// While one claim is open, a report raised on a goroutine the claimer
// started teaches the claims its parent, for when a second claim opens
// after the goroutine has returned and its parent can no longer be found;
// once the last claim closes, nobody asks, and the parents are forgotten.
func TestClaimsLearnParentsWhileOpenAndForgetThemWhenAllClose(t *testing.T) {
	unclaimed(t)
	c := OpenClaim(nil)
	me := task.ID()
	child := make(chan int64)
	go func() {
		Emit(Warn(MempoolMisuse, "from a child", 0))
		child <- task.ID()
	}()
	id := <-child
	require.Equal(t, 1, c.Len())
	claims.mu.Lock()
	p, known := claims.parents[id]
	claims.mu.Unlock()
	require.True(t, known, "learnt from the child's own stack")
	require.Equal(t, me, p)
	foreignClaim(t).Close()
	claims.mu.Lock()
	_, known = claims.parents[id]
	claims.mu.Unlock()
	require.True(t, known, "kept while a claim is open")
	c.Close()
	claims.mu.Lock()
	defer claims.mu.Unlock()
	require.Nil(t, claims.parents)
}

// Only a report about the goroutine that raises it teaches the claims that
// goroutine's parent: the raiser's own stack says nothing about the creator
// of another goroutine a report is about (a dead one the reaper found, say).
func TestAReportAboutAnotherGoroutineTeachesNoParent(t *testing.T) {
	unclaimed(t)
	c := OpenClaim(nil)
	defer c.Close()
	const other = int64(1) << 40
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := Warn(MempoolMisuse, "about another goroutine", 0)
		r.Goroutine.ID = other
		Emit(r)
	}()
	<-done
	require.Equal(t, 1, c.Len())
	claims.mu.Lock()
	defer claims.mu.Unlock()
	_, known := claims.parents[other]
	require.False(t, known)
}

// CollectFunc hands every report over and keeps none, so that a program
// counting thousands of reports runs in constant memory.
func TestCollectFuncKeepsNoReport(t *testing.T) {
	unclaimed(t)
	handed, kept := 0, -1
	CollectFunc(func() {
		Emit(Warn(MempoolMisuse, "handed over", 0))
		claims.mu.Lock()
		c := claims.open[0]
		claims.mu.Unlock()
		kept = c.Len()
	}, func(*Report) { handed++ })
	require.Equal(t, 1, handed)
	require.Zero(t, kept)
}

// deliver sees a report after the claim kept it.
func TestClaimDeliversAfterKeeping(t *testing.T) {
	unclaimed(t)
	var c *Claim
	seen := -1
	c = OpenClaim(func(*Report) { seen = c.Len() })
	defer c.Close()
	Emit(Warn(MempoolMisuse, "kept, then delivered", 0))
	require.Equal(t, 1, seen)
}

// Collect and CollectFunc close their claim even when fn panics.
func TestCollectClosesItsClaimWhenFnPanics(t *testing.T) {
	unclaimed(t)
	for _, collect := range []func(func()){
		func(fn func()) { Collect(fn) },
		func(fn func()) { CollectFunc(fn, func(*Report) {}) },
	} {
		require.Panics(t, func() { collect(func() { panic("fn failed") }) })
		claims.mu.Lock()
		open := len(claims.open)
		claims.mu.Unlock()
		require.Zero(t, open)
	}
}

// A report from a grandchild of the claimer is attributed to it however
// many generations the walk has to climb, even with another claim open.
func TestAGrandchildsReportIsTheClaimersOnly(t *testing.T) {
	unclaimed(t)
	mine := OpenClaim(nil)
	defer mine.Close()
	other := foreignClaim(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		inner := make(chan struct{})
		go func() {
			defer close(inner)
			Emit(Warn(MempoolMisuse, "from a grandchild", 0))
		}()
		<-inner
	}()
	<-done
	require.Equal(t, 1, mine.Len())
	require.Zero(t, other.Len())
}
