package krules_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mempool"
	"github.com/krules/krules/mmnotifier"
	"github.com/krules/krules/nonblock"
)

// A non-blockable MMU-notifier callback runs inside a non-block section, as
// the OOM reaper runs it. Sleeping there is reported at the call, whether or
// not the sleep would have blocked.
func Example_sleepInNonBlockSection() {
	reports := krules.Collect(func() {
		krules.SetName("oom_reaper")
		defer krules.SetName("")

		nonblock.Start()
		defer nonblock.End()
		nonblock.Sleep(time.Millisecond) // a callback that sleeps
	})
	for _, r := range reports {
		head, site, _ := strings.Cut(r.Headline, " at ")
		fmt.Println(r.Kind)
		fmt.Println(head, "at", filepath.Base(site[:strings.LastIndexByte(site, ':')]))
		fmt.Println(strings.Contains(r.Text, "non_block: 1, pid: "), r.Goroutine.Name)
	}
	// Output:
	// sleep-in-atomic
	// BUG: sleeping function called from invalid context at example_test.go
	// true oom_reaper
}

// driver is what the workload needs of either driver.
type driver interface {
	mmnotifier.Notifier
	ioctlAddBuffer()
}

// runDriver is the workload: the driver mirrors an address space; an ioctl
// adds a buffer; the process unmaps part of its memory and exits.
func runDriver(zone *gfp.Zone, d driver) {
	mm := mmnotifier.NewMM(mmnotifier.WithZone(zone))
	sub, err := mmnotifier.Register(mm, d)
	if err != nil {
		panic(err)
	}
	addr, err := mm.Mmap(16*mmnotifier.PageSize, mmnotifier.ProtReadWrite)
	if err != nil {
		panic(err)
	}
	if err := mm.Write(addr, make([]byte, 16*mmnotifier.PageSize)); err != nil {
		panic(err)
	}
	d.ioctlAddBuffer()
	if err := mm.Unmap(addr, 8*mmnotifier.PageSize); err != nil {
		panic(err)
	}
	d.ioctlAddBuffer()
	if err := mm.Unmap(addr+8*mmnotifier.PageSize, 8*mmnotifier.PageSize); err != nil {
		panic(err)
	}
	sub.Unregister()
	mm.Exit()
}

type buggyDriver struct {
	mu   lockclass.Mutex
	zone *gfp.Zone
	bufs [][]byte
}

func newBuggyDriver(zone *gfp.Zone) *buggyDriver {
	d := &buggyDriver{zone: zone}
	d.mu.Init(lockclass.WithName("&drv->lock"))
	return d
}

func (d *buggyDriver) InvalidateRangeStart(r *mmnotifier.Range) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	scratch, err := d.zone.Alloc(4096, gfp.Kernel) // the bug: may reclaim
	if err != nil {
		return err
	}
	defer d.zone.Free(scratch)
	// ... build the translation update in scratch and post it ...
	return nil
}

func (d *buggyDriver) close() {
	for _, b := range d.bufs {
		d.zone.Free(b)
	}
}

func (d *buggyDriver) ioctlAddBuffer() {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, err := d.zone.Alloc(256, gfp.Kernel) // reclaim under the notifier's lock
	if err != nil {
		return
	}
	d.bufs = append(d.bufs, b)
}

type fixedDriver struct {
	mu        lockclass.Mutex
	zone      *gfp.Zone
	pool      *mempool.Pool[[]byte]
	small     [256]byte
	fallbacks int
	bufs      [][]byte
}

func newFixedDriver(zone *gfp.Zone) (*fixedDriver, error) {
	pool, err := mempool.NewKmallocPool(4, zone, 4096, mempool.WithName("drv-scratch"))
	if err != nil {
		return nil, err
	}
	d := &fixedDriver{zone: zone, pool: pool}
	d.mu.Init(lockclass.WithName("&drv->lock"))
	return d, nil
}

func (d *fixedDriver) InvalidateRangeStart(r *mmnotifier.Range) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	scratch, err := d.pool.Alloc(gfp.Atomic | gfp.NoWarn) // never reclaims
	if err != nil {
		d.fallbacks++
		scratch = d.small[:] // post the update in several small passes
	} else {
		defer d.pool.Free(scratch)
	}
	_ = scratch // ... build the translation update in scratch and post it ...
	return nil
}

func (d *fixedDriver) ioctlAddBuffer() {
	b, err := d.zone.Alloc(256, gfp.Kernel) // before taking the lock
	if err != nil {
		return
	}
	d.mu.Lock()
	d.bufs = append(d.bufs, b)
	d.mu.Unlock()
}

func (d *fixedDriver) close() {
	for _, b := range d.bufs {
		d.zone.Free(b)
	}
	d.pool.Close()
}
