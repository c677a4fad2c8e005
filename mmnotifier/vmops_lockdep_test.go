//go:build !krules_nolockdep

package mmnotifier_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mmnotifier"
)

// lockingVMOps takes the driver lock in Open and Close, as
// rdma_umap_open and rdma_umap_close take ufile->umap_lock.
type lockingVMOps struct{ mu *lockclass.Mutex }

func (o lockingVMOps) Open(*mmnotifier.VMA)  { o.mu.Lock(); o.mu.Unlock() }
func (o lockingVMOps) Close(*mmnotifier.VMA) { o.mu.Lock(); o.mu.Unlock() }

// Open and Close run under mmap_lock, so a driver lock they take comes
// after it; holding that lock around a fault, or a user copy that may
// fault, closes the cycle, whichever comes first. The three ways in are
// munmap (split and remove_vma), mprotect (split) and exit_mmap, whose
// mmap_lock is another address space's lock of the same class.
func TestVMOpsLockUnderMmapLockIsACycleWithAFault(t *testing.T) {
	ways := map[string]func(mm *mmnotifier.MM, addr uint64){
		"munmap":   func(mm *mmnotifier.MM, addr uint64) { require.NoError(t, mm.Unmap(addr, pg)) },
		"mprotect": func(mm *mmnotifier.MM, addr uint64) { require.NoError(t, mm.Protect(addr, pg, mmnotifier.ProtRead)) },
		"exit":     func(mm *mmnotifier.MM, _ uint64) { mm.Exit() },
	}
	faults := map[string]func(mm *mmnotifier.MM, addr uint64){
		"fault": func(mm *mmnotifier.MM, addr uint64) {
			_, err := mm.Fault(addr, true)
			require.NoError(t, err)
		},
		"copy": func(mm *mmnotifier.MM, addr uint64) { require.NoError(t, mm.Write(addr, []byte{1})) },
	}
	for way, op := range ways {
		for fault, touch := range faults {
			for _, callbackFirst := range []bool{true, false} {
				t.Run(way+", "+fault+map[bool]string{true: ", callback first", false: ", fault first"}[callbackFirst], func(t *testing.T) {
					mm := newMM(t)
					later := newMM(t) // faulted once mm has exited
					rec := krulestest.Record(t)
					mu := driverLock()
					dev, err := mm.MmapDevice(2*pg, mmnotifier.ProtReadWrite, func(*mmnotifier.VMA) (mmnotifier.VMOps, error) {
						return lockingVMOps{mu}, nil
					})
					require.NoError(t, err)
					anon := mapTouched(t, mm, 1)
					if callbackFirst {
						op(mm, dev)
						require.Empty(t, rec.Reports())
						if way == "exit" {
							mm = later
							anon = mapTouched(t, mm, 1)
						}
					}
					mu.Lock()
					touch(mm, anon)
					mu.Unlock()
					if !callbackFirst {
						require.Empty(t, rec.Reports())
						op(mm, dev)
					}
					r := requireCircular(t, rec, "&drv->lock", "&mm->mmap_lock")
					require.Contains(t, r.Text, "mmnotifier_test.lockingVMOps.")
					require.Contains(t, r.Text, map[string]string{"munmap": "mmnotifier.(*MM).Unmap+", "mprotect": "mmnotifier.(*MM).Protect+", "exit": "mmnotifier.(*MM).exitMmap+"}[way])
				})
			}
		}
	}
}

// A close that takes no lock teaches nothing: a driver lock held around a
// fault after it is not reported.
func TestVMOpsWithoutLocksAreNoCycle(t *testing.T) {
	rec := krulestest.Record(t)
	mm := newMM(t)
	d := newVMDev(t, mm)
	addr, err := mm.MmapDevice(2*pg, mmnotifier.ProtReadWrite, d.mmap)
	require.NoError(t, err)
	require.NoError(t, mm.Unmap(addr, pg))
	mu := driverLock()
	mu.Lock()
	_, err = mm.Fault(addr+pg, true)
	mu.Unlock()
	require.NoError(t, err)
	require.Empty(t, rec.Reports())
}
