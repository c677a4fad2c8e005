//go:build unix

package gfp

import (
	"fmt"
	"syscall"
	"unsafe"
)

const haveMmap = true

// mmapArena maps an anonymous private region. With cfg.huge it first asks
// for hugetlb pages (Linux) and otherwise advises transparent huge pages;
// with cfg.mlock it locks the region so it never faults, as DMA-style users
// want.
func mmapArena(cfg arenaConfig) (arena, error) {
	size := cfg.size
	backing := "mmap"
	var mem []byte
	var err error
	if cfg.huge {
		mem, backing = mapHuge(size)
	}
	full := mem
	if mem == nil {
		// Map the alignment's worth more and use the aligned part, so that
		// blocks are aligned in the address space as in physical memory.
		align := alignmentFor(size)
		full, err = syscall.Mmap(-1, 0, size+align, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			return arena{}, fmt.Errorf("gfp: mmap %d bytes: %w", size, err)
		}
		addr := uintptr(unsafe.Pointer(unsafe.SliceData(full)))
		skip := int((uintptr(align) - addr%uintptr(align)) % uintptr(align))
		mem = full[skip : skip+size]
		if cfg.huge {
			backing = adviseHuge(mem)
		}
	}
	a := arena{mem: mem[:cfg.size:cfg.size], backing: backing}
	a.release = func() error { return syscall.Munmap(full) }
	if cfg.mlock {
		if err := syscall.Mlock(mem); err != nil {
			_ = syscall.Munmap(full)
			return arena{}, fmt.Errorf("gfp: mlock %d bytes: %w", size, err)
		}
		a.locked = true
	}
	return a, nil
}
