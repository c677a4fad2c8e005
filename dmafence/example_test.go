//go:build !krules_nolockdep

package dmafence_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/krules/krules"
	"github.com/krules/krules/dmafence"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
)

// A job's fence is published in a buffer's reservation object and
// signalled by a completion path inside a signalling section. The room for
// the fence is reserved (with GFP_KERNEL) before; allocating in the
// signalling path instead is reported at once, as a circular dependency
// through dma_fence_map, because any MMU notifier may wait for the fence
// while reclaim runs it.
func Example() {
	lockclass.Default().Reset()
	reports := krules.Collect(func() {
		bo := dmafence.NewResv()
		fence := dmafence.New(dmafence.ContextAlloc(1), 1)

		if err := bo.Lock(nil); err != nil {
			panic(err)
		}
		if err := bo.ReserveFences(1); err != nil { // may allocate: before signalling
			panic(err)
		}
		bo.AddFence(fence, dmafence.UsageWrite)
		bo.Unlock()

		done := make(chan struct{})
		go func() { // the scheduler's completion path
			defer close(done)
			cookie := dmafence.BeginSignalling()
			defer dmafence.EndSignalling(cookie)
			record, err := gfp.Alloc(64, gfp.Kernel) // the bug
			if err == nil {
				gfp.Free(record)
			}
			_ = fence.Signal()
		}()
		fmt.Println("waited:", bo.Wait(context.Background(), dmafence.UsageBookkeep) == nil)
		<-done
	})
	for _, r := range reports {
		fmt.Println(r.Headline)
		fmt.Println(strings.Contains(r.Text, "dma_fence_map"), strings.Contains(r.Text, "fs_reclaim"))
	}
	// Output:
	// waited: true
	// WARNING: possible circular locking dependency detected
	// true true
}
