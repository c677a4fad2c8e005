//go:build unix

package gfp

import (
	"fmt"
	"syscall"
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
	if mem == nil {
		mem, err = syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			return arena{}, fmt.Errorf("gfp: mmap %d bytes: %w", size, err)
		}
		if cfg.huge {
			backing = adviseHuge(mem)
		}
	}
	a := arena{mem: mem[:cfg.size:cfg.size], backing: backing}
	full := mem
	a.release = func() error { return syscall.Munmap(full) }
	if cfg.mlock {
		if err := syscall.Mlock(mem); err != nil {
			_ = syscall.Munmap(mem)
			return arena{}, fmt.Errorf("gfp: mlock %d bytes: %w", size, err)
		}
		a.locked = true
	}
	return a, nil
}
