//go:build linux

package gfp

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapShared maps size bytes of a new memfd at an address aligned to align,
// inside a reservation of size+align bytes (full, for munmap). It returns
// file -1 and nil slices if the system refuses (no memfd_create, a seccomp
// filter), and the caller maps anonymous memory instead.
func mapShared(size, align int) (full, mem []byte, file int) {
	fd, err := unix.MemfdCreate("krules-zone", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, nil, -1
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		_ = unix.Close(fd)
		return nil, nil, -1
	}
	full, err = syscall.Mmap(-1, 0, size+align, syscall.PROT_NONE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		_ = unix.Close(fd)
		return nil, nil, -1
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(full)))
	skip := int((uintptr(align) - addr%uintptr(align)) % uintptr(align))
	at := unsafe.Pointer(unsafe.SliceData(full[skip:]))
	if _, err := unix.MmapPtr(fd, 0, at, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED); err != nil {
		_ = syscall.Munmap(full)
		_ = unix.Close(fd)
		return nil, nil, -1
	}
	return full, full[skip : skip+size], fd
}

// vmap maps the arena pages at the given page indexes, in order, into a new
// virtually contiguous area: the kernel's vmap_pages_range into a fresh
// vmap_area. Runs of consecutive pages are mapped with one call.
func vmap(file int, pages []int32) (unsafe.Pointer, error) {
	n := uintptr(len(pages)) << PageShift
	area, err := unix.MmapPtr(-1, 0, nil, n, unix.PROT_NONE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(pages); {
		j := i + 1
		for j < len(pages) && pages[j] == pages[j-1]+1 {
			j++
		}
		at := unsafe.Add(area, i<<PageShift)
		if _, err := unix.MmapPtr(file, int64(pages[i])<<PageShift, at, uintptr(j-i)<<PageShift,
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED); err != nil {
			_ = unix.MunmapPtr(area, n)
			return nil, err
		}
		i = j
	}
	return area, nil
}

// vunmap removes an area vmap made.
func vunmap(area unsafe.Pointer, npages int) error {
	return unix.MunmapPtr(area, uintptr(npages)<<PageShift)
}
