package gfp

import "sync"

// DefaultZoneSize is the size of the package's default zone: 64 MiB of
// address space, which mmap commits only as pages are touched.
const DefaultZoneSize = 64 << 20

// The default zone is the kernel's own global: the memory alloc_pages and
// kmalloc use when no zone is named. It is created on first use.
var defaultZone struct {
	mu sync.Mutex
	z  *Zone
}

// Default returns the package's default zone, creating it on first use
// (DefaultZoneSize bytes, default watermarks). It panics if the zone cannot
// be created, as a kernel cannot boot without memory.
func Default() *Zone {
	defaultZone.mu.Lock()
	defer defaultZone.mu.Unlock()
	if defaultZone.z == nil {
		z, err := NewZone(DefaultZoneSize)
		if err != nil {
			panic(err)
		}
		defaultZone.z = z
	}
	return defaultZone.z
}

// SetDefault makes z the default zone and returns the previous one (nil if
// none was created), which the caller now owns and should Close.
func SetDefault(z *Zone) (previous *Zone) {
	defaultZone.mu.Lock()
	defer defaultZone.mu.Unlock()
	previous, defaultZone.z = defaultZone.z, z
	return previous
}

// ResetDefault closes the default zone, if one was created, and forgets it,
// so that the next use creates a fresh one. Tests call it to stop the
// default zone's kswapd and start from a known state.
func ResetDefault() error {
	if z := SetDefault(nil); z != nil {
		return z.Close()
	}
	return nil
}

// AllocPages allocates from the default zone: alloc_pages().
func AllocPages(order int, flags Flags) (*Page, error) { return Default().AllocPages(order, flags) }

// Alloc allocates from the default zone: kmalloc().
func Alloc(size int, flags Flags) ([]byte, error) { return Default().Alloc(size, flags) }

// Free frees memory Alloc returned from the default zone: kfree().
func Free(b []byte) { Default().Free(b) }

// Vmalloc allocates from the default zone: __vmalloc().
func Vmalloc(size int, flags Flags) ([]byte, error) { return Default().Vmalloc(size, flags) }

// Vfree frees an area Vmalloc returned from the default zone: vfree().
func Vfree(b []byte) { Default().Vfree(b) }

// Kvmalloc allocates from the default zone: kvmalloc().
func Kvmalloc(size int, flags Flags) ([]byte, error) { return Default().Kvmalloc(size, flags) }

// Kvfree frees memory Kvmalloc returned from the default zone: kvfree().
func Kvfree(b []byte) { Default().Kvfree(b) }
