package mempool

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
)

// A waiter that timed out reports a deadlock only if no Free refilled the
// reserve since its wait began: a refill that came after its timeout, while
// it was awake and so woke nobody, is a free that did come (the waiter
// finds the element on its next try), even if the holders were looked at
// before it. Without that, a waiter whose timeout met the test's free
// reported at once (TestDeadlockReportCountsFromTheLastWakeUp, under load).
func TestTimedOutReportsNoDeadlockAfterARefill(t *testing.T) {
	fail := false
	alloc := func(gfp.Flags) (*int, error) {
		if fail {
			return nil, errors.New("no memory")
		}
		return new(int), nil
	}
	p, err := New(1, alloc, func(*int) {}, WithDebug(true))
	require.NoError(t, err)
	fail = true
	x, err := p.Alloc(gfp.NoIO) // the reserve's one, held by the caller: no holder that could free it
	require.NoError(t, err)
	p.lock()
	refills := p.st.refills
	p.unlock(0)
	var afterRefill, without bool
	reps := krules.Collect(func() {
		afterRefill = p.timedOut(true, refills-1)
		without = p.timedOut(true, refills)
	})
	require.False(t, afterRefill, "a refill since the wait began")
	require.True(t, without)
	require.Len(t, reps, 1)
	require.Equal(t, krules.MempoolDeadlock, reps[0].Kind)
	p.Free(x)
	require.NoError(t, p.Close())
}
