//go:build linux

package gfp

import "syscall"

const hugePageSize = 2 << 20

// mapHuge tries a hugetlb mapping, rounded up to whole huge pages. It
// returns nil when the system has no huge pages to give.
func mapHuge(size int) ([]byte, string) {
	rounded := (size + hugePageSize - 1) &^ (hugePageSize - 1)
	mem, err := syscall.Mmap(-1, 0, rounded, syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_ANON|syscall.MAP_PRIVATE|syscall.MAP_HUGETLB)
	if err != nil {
		return nil, ""
	}
	return mem, "mmap+hugetlb"
}

// adviseHuge asks for transparent huge pages on an ordinary mapping.
func adviseHuge(mem []byte) string {
	if syscall.Madvise(mem, 14 /* MADV_HUGEPAGE */) == nil {
		return "mmap+thp"
	}
	return "mmap"
}
