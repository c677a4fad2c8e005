package mmnotifier_test

import (
	"fmt"

	"github.com/krules/krules/gfp"
	"github.com/krules/krules/mmnotifier"
)

// devObject is a driver's object that a process maps: each VMA that shows
// it holds a reference, as drm_gem_vm_open and drm_gem_vm_close keep one.
type devObject struct{ refs int }

func (o *devObject) Open(v *mmnotifier.VMA) {
	o.refs++
	fmt.Printf("open  %d pages, refs %d\n", (v.End()-v.Start())/mmnotifier.PageSize, o.refs)
}

func (o *devObject) Close(v *mmnotifier.VMA) {
	o.refs--
	fmt.Printf("close %d pages, refs %d\n", (v.End()-v.Start())/mmnotifier.PageSize, o.refs)
}

// A device mapping's operations keep the object's references balanced
// however the process cuts the mapping up: mprotect of its middle splits
// it in three, munmap closes one piece, exit the rest.
func ExampleMM_MmapDevice() {
	zone, _ := gfp.NewZone(8 << 20)
	defer zone.Close()
	mm := mmnotifier.NewMM(mmnotifier.WithZone(zone))

	obj := &devObject{}
	addr, err := mm.MmapDevice(4*mmnotifier.PageSize, mmnotifier.ProtReadWrite, func(*mmnotifier.VMA) (mmnotifier.VMOps, error) {
		obj.refs++ // the driver's mmap handler: drm_gem_mmap's reference
		return obj, nil
	})
	if err != nil {
		panic(err)
	}
	_ = mm.Protect(addr+mmnotifier.PageSize, mmnotifier.PageSize, mmnotifier.ProtRead)
	_ = mm.Unmap(addr, mmnotifier.PageSize)
	mm.Exit()
	// Output:
	// open  1 pages, refs 2
	// open  2 pages, refs 3
	// close 1 pages, refs 2
	// close 1 pages, refs 1
	// close 2 pages, refs 0
}
