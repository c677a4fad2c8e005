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
	file := -1
	if mem == nil && !cfg.huge {
		// A memfd where the system has one, so that vmalloc can map its
		// pages again, virtually contiguous, as the kernel maps any page
		// into the vmalloc area.
		full, mem, file = mapShared(size, alignmentFor(size))
		if file >= 0 {
			backing = "memfd"
		}
	}
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
	a := arena{mem: mem[:cfg.size:cfg.size], backing: backing, file: file}
	a.release = func() error {
		err := syscall.Munmap(full)
		if file >= 0 {
			_ = syscall.Close(file)
		}
		return err
	}
	if cfg.mlock {
		if err := syscall.Mlock(mem); err != nil {
			_ = a.release()
			return arena{}, fmt.Errorf("gfp: mlock %d bytes: %w", size, err)
		}
		a.locked = true
	}
	return a, nil
}
