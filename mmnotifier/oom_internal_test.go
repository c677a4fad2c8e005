package mmnotifier

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
)

// oom_reap_task says "unable to reap" only if MMF_OOM_SKIP is still clear
// after the last try: exit_mmap sets it without mmap_lock once the victim's
// pages are gone, and then there is nothing to complain about.
func TestReaperIsQuietWhenTheVictimExitedMeanwhile(t *testing.T) {
	krulestest.Check(t)
	var out bytes.Buffer
	prev := krules.SetOutput(&out)
	t.Cleanup(func() { krules.SetOutput(prev) })
	mm := testMM(t)
	tries := 0
	f := &Funcs{Start: func(r *Range) error {
		if r.Blockable() {
			return nil
		}
		if tries++; tries == MaxOOMReapRetries {
			mm.flags.Or(mmfOOMSkip) // exit_mmap's set_bit, on another CPU
		}
		return ErrAgain
	}}
	_, err := Register(mm, f.Notifier())
	require.NoError(t, err)
	addr, err := mm.Mmap(page, ProtReadWrite)
	require.NoError(t, err)
	_, err = mm.Fault(addr, true)
	require.NoError(t, err)
	res := mm.OOMReap(context.Background(), WithRetryDelay(time.Millisecond))
	require.Equal(t, ReapResult{Tries: MaxOOMReapRetries}, res)
	require.NotContains(t, out.String(), "unable to reap")
	require.Contains(t, out.String(), "callback failed with -11 in non-blockable context.")
}
