//go:build !krules_nolockdep

package krules_test

import (
	"fmt"
	"strings"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
)

// A driver mirrors an address space (like mlx5's on-demand paging): its MMU
// notifier builds a scratch buffer for every invalidation, with GFP_KERNEL,
// under the driver lock; elsewhere, an ioctl allocates under the same lock.
// Reclaim can invalidate page tables, so it can call the notifier while the
// ioctl holds the lock and waits for reclaim: a deadlock that needs real
// memory pressure to happen. krules reports it without any: every
// allocation that may reclaim touches the notifier map, which invalidations
// hold across their callbacks.
//
// The fixed driver allocates before taking its lock in the ioctl, and takes
// its scratch buffers from a mempool with GFP_ATOMIC, falling back to a
// small buffer of its own: the same workload raises nothing.
func Example_notifierAllocationDeadlock() {
	zone, err := gfp.NewZone(16 << 20)
	if err != nil {
		panic(err)
	}
	defer func() {
		if err := zone.Close(); err != nil {
			panic(err)
		}
	}()

	lockclass.Default().Reset() // lockdep on, with an empty graph
	buggy := newBuggyDriver(zone)
	reports := krules.Collect(func() { runDriver(zone, buggy) })
	buggy.close()
	for _, r := range reports {
		fmt.Println(r.Kind)
		fmt.Println(r.Headline)
		text := r.Text[strings.Index(r.Text, "Chain exists of:"):]
		fmt.Print(text[:strings.Index(text, " *** DEADLOCK ***")])
	}

	lockclass.Default().Reset()
	fixed, err := newFixedDriver(zone)
	if err != nil {
		panic(err)
	}
	reports = krules.Collect(func() { runDriver(zone, fixed) })
	fmt.Println("fixed driver:", len(reports), "reports,", fixed.fallbacks, "fallbacks")
	fixed.close()
	// Output:
	// circular-dependency
	// WARNING: possible circular locking dependency detected
	// Chain exists of:
	//   &drv->lock --> fs_reclaim --> mmu_notifier_invalidate_range_start
	//
	//  Possible unsafe locking scenario:
	//
	//        CPU0                    CPU1
	//        ----                    ----
	//   lock(mmu_notifier_invalidate_range_start);
	//                                lock(fs_reclaim);
	//                                lock(mmu_notifier_invalidate_range_start);
	//   lock(&drv->lock);
	//
	// fixed driver: 0 reports, 0 fallbacks
}
