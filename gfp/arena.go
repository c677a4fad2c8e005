package gfp

import "unsafe"

// An arena is the memory a Zone hands out: one contiguous, page-aligned
// region, obtained from mmap where the platform has it and from the Go heap
// otherwise. Pages are never returned to the system while the zone lives, as
// a zone's memory never leaves its node.
type arena struct {
	mem     []byte // page-aligned, a whole number of pages
	backing string // "memfd", "mmap", "mmap+hugetlb", "mmap+thp", "heap"
	locked  bool   // mlock succeeded
	release func() error
	// file is the memfd behind a "memfd" arena (-1 otherwise): its pages
	// can be mapped a second time, elsewhere, which is what vmalloc does.
	file int
}

// arenaConfig carries the options that shape the mapping.
type arenaConfig struct {
	size     int
	mlock    bool
	huge     bool
	portable bool
}

// alignmentFor returns the alignment that makes every buddy block of a
// zone of size bytes aligned to its own size in the address space (and so
// in frame numbers), as physical blocks are: the largest block, at most a
// MaxOrder block.
func alignmentFor(size int) int {
	a := PageSize
	for a < PageSize<<MaxOrder && a*2 <= size {
		a *= 2
	}
	return a
}

// heapArena is the portable fallback: a Go byte slice, aligned by hand. It
// cannot be locked or backed by huge pages.
func heapArena(size int) (arena, error) {
	align := alignmentFor(size)
	buf := make([]byte, size+align)
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	skip := int((uintptr(align) - addr%uintptr(align)) % uintptr(align))
	return arena{
		mem:     buf[skip : skip+size : skip+size],
		backing: "heap",
		release: func() error { return nil },
		file:    -1,
	}, nil
}

// newArena maps cfg.size bytes, falling back to the heap where mmap is not
// available or cfg.portable asks for it.
func newArena(cfg arenaConfig) (arena, error) {
	if cfg.portable || !haveMmap {
		if cfg.mlock || cfg.huge {
			return arena{}, errUnsupported
		}
		return heapArena(cfg.size)
	}
	return mmapArena(cfg)
}

func (a *arena) base() uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(a.mem))) }
