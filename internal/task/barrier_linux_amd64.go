//go:build linux && amd64 && !race

package task

import (
	"sync/atomic"
	"syscall"
	"unsafe"
)

// On amd64 an ordinary store is already a release store, and the owner's
// side of the table's Dekker pair needs nothing stronger if the trimmer's
// side forces a full barrier on every CPU running this process:
// membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), as liburcu's membarrier
// flavour does. If the kernel lacks it (or a seccomp filter refuses it),
// both sides use sequentially consistent atomics instead.

const (
	sysMembarrier                  = 324 // SYS_membarrier on x86_64
	membarrierQuery                = 0
	membarrierPrivateExpedited     = 1 << 3
	membarrierRegisterPrivateExped = 1 << 4
)

var plainStores = registerMembarrier()

func registerMembarrier() bool {
	r, _, e := syscall.RawSyscall(sysMembarrier, membarrierQuery, 0, 0)
	if e != 0 || r&membarrierPrivateExpedited == 0 {
		return false
	}
	_, _, e = syscall.RawSyscall(sysMembarrier, membarrierRegisterPrivateExped, 0, 0)
	return e == 0
}

// ownerStore is the owner's store to its node's busy word.
func ownerStore(p *atomic.Int32, v int32) {
	if plainStores {
		*(*int32)(unsafe.Pointer(p)) = v
		return
	}
	p.Store(v)
}

// stealerBarrier orders the trimmer's retiring stores before its busy loads
// on every CPU (nothing to do when both sides use atomics). It reports false
// if the barrier could not be issued; the trimmer then retires nothing.
func stealerBarrier() bool {
	if !plainStores {
		return true
	}
	_, _, e := syscall.Syscall(sysMembarrier, membarrierPrivateExpedited, 0, 0)
	return e == 0
}
