package lockclass

import (
	"testing"
	"time"
)

// A reader that read the grace-period index just before a flip and counted
// itself after it is waited for by the next grace period: each grace
// period flips the index twice (srcutree.c's srcu_flip, done twice by
// srcu_advance_state), so the counter such a reader sits in is drained
// by the next one. The reader's two steps are done by hand here, around a
// whole grace period, to place the flip between them.
func TestGracePeriodWaitsForAReaderThatStraddledAFlip(t *testing.T) {
	var c gpCore
	idx := uint8(c.idx.Load() & 1) // the reader reads the index...
	c.synchronize()                // ...a grace period flips it...
	c.cnt[idx].Add(1)              // ...and the reader counts itself in the old counter
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.synchronize() // began after the reader: must wait for it
	}()
	select {
	case <-done:
		t.Fatal("the grace period ended with a reader inside")
	case <-time.After(200 * time.Millisecond):
	}
	c.readUnlock(idx)
	<-done
}
