package lockclass_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/lockclass"
)

// HeldBy is ww->ctx == ctx, dma_resv_locking_ctx's comparison: nil for a
// free mutex or one held without a context, the holder's context
// otherwise, and never a context of another class even with the same
// stamp; any goroutine may ask.
func TestWWHeldBy(t *testing.T) {
	forEachWWClass(t, func(t *testing.T, class *lockclass.WWClass) {
		var m lockclass.WWMutex
		m.Init(class)
		var ctx lockclass.WWAcquireCtx
		ctx.Init(class)
		other := make(chan *lockclass.WWAcquireCtx)
		done := make(chan struct{})
		go func() { // a second live context of the class, on its own goroutine
			var o lockclass.WWAcquireCtx
			o.Init(class)
			other <- &o
			<-done
			o.Fini()
			close(other)
		}()
		o := <-other
		// A context of another class with ctx's stamp: told apart by class.
		foreign := lockclass.NewWWClass("foreign_ww_class")
		var f lockclass.WWAcquireCtx
		f.Init(foreign)
		for f.Stamp() < ctx.Stamp() {
			f.Fini()
			f.Init(foreign)
		}

		require.True(t, m.HeldBy(nil), "free: NULL")
		require.False(t, m.HeldBy(&ctx))

		require.NoError(t, m.Lock(&ctx))
		require.True(t, m.HeldBy(&ctx))
		require.False(t, m.HeldBy(nil))
		require.False(t, m.HeldBy(o))
		require.Equal(t, ctx.Stamp(), f.Stamp(), "stamps are counted per class")
		require.False(t, m.HeldBy(&f), "another class's context with the holder's stamp")
		asked := make(chan bool)
		go func() { asked <- m.HeldBy(&ctx) }()
		require.True(t, <-asked, "asked from another goroutine")
		m.Unlock()
		require.True(t, m.HeldBy(nil))
		require.False(t, m.HeldBy(&ctx))
		ctx.Fini()
		f.Fini()

		require.NoError(t, m.Lock(nil))
		require.True(t, m.HeldBy(nil), "held without a context: NULL")
		require.False(t, m.HeldBy(o))
		m.Unlock()
		close(done)
		<-other
	})
}
