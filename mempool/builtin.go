package mempool

import (
	"fmt"
	"reflect"
	"sync/atomic"
	"unsafe"

	"github.com/krules/krules/gfp"
)

// elemOps are what a pool knows about its element type beyond alloc and
// free (and nil, which Pool.isNil tells from T's kind): how to identify an
// element (debug tracking), its bytes (poisoning), a cheap validity check
// and a hook on entering and leaving the reserve (the page pool's frame
// bitmap).
type elemOps[T any] struct {
	key     func(T) any
	bytes   func(T) []byte
	check   func(T) string
	reserve func(x T, in bool)
}

// genericOps derives the ops of a user pool from T: tracking for
// comparable types (and byte slices, by address), poisoning for byte
// slices.
func genericOps[T any]() elemOps[T] {
	t := reflect.TypeFor[T]()
	var ops elemOps[T]
	switch {
	case t == reflect.TypeFor[[]byte]():
		ops.key = func(x T) any { return uintptr(*(*unsafe.Pointer)(unsafe.Pointer(&x))) }
		ops.bytes = func(x T) []byte { return *(*[]byte)(unsafe.Pointer(&x)) }
	case t.Comparable() && t.Kind() != reflect.Interface:
		ops.key = func(x T) any { return x }
	}
	return ops
}

// NewPagePool creates a pool of blocks of 1<<order pages of zone z (nil:
// the default zone): mempool_create_page_pool. Frees are checked by frame
// number: a page of another zone or order, a page that is not allocated and
// a page already in the reserve are reported and ignored.
func NewPagePool(minNr int, z *gfp.Zone, order int, opts ...Option) (*Pool[*gfp.Page], error) {
	if z == nil {
		z = gfp.Default()
	}
	if order < 0 || order > gfp.MaxOrder {
		return nil, fmt.Errorf("mempool: page order %d", order)
	}
	inReserve := make([]atomic.Uint64, (z.Pages()+63)/64)
	bit := func(pg *gfp.Page) (*atomic.Uint64, uint64) {
		i := pg.PFN() - z.StartPFN()
		return &inReserve[i/64], 1 << (i % 64)
	}
	ops := elemOps[*gfp.Page]{
		key:   func(pg *gfp.Page) any { return pg.PFN() },
		bytes: func(pg *gfp.Page) []byte { return pg.Bytes() },
		check: func(pg *gfp.Page) string {
			if pg.Zone() != z || z.PageByPFN(pg.PFN()) != pg {
				return "page is not from zone " + z.Name()
			}
			if pg.Order() != order {
				return fmt.Sprintf("pfn %#x is an order-%d block in an order-%d pool", pg.PFN(), pg.Order(), order)
			}
			if !pg.InUse() {
				return fmt.Sprintf("pfn %#x is not allocated (freed twice?)", pg.PFN())
			}
			if w, b := bit(pg); w.Load()&b != 0 {
				return fmt.Sprintf("pfn %#x is already in the reserve (freed twice)", pg.PFN())
			}
			return ""
		},
		reserve: func(pg *gfp.Page, in bool) {
			w, b := bit(pg)
			if in {
				w.Or(b)
			} else {
				w.And(^b)
			}
		},
	}
	alloc := func(flags gfp.Flags) (*gfp.Page, error) { return z.AllocPages(order, flags) }
	free := func(pg *gfp.Page) { z.FreePages(pg, order) }
	return newPool(minNr, alloc, free, ops, opts)
}

// NewKmallocPool creates a pool of size-byte buffers from zone z (nil: the
// default zone): mempool_create_kmalloc_pool.
func NewKmallocPool(minNr int, z *gfp.Zone, size int, opts ...Option) (*Pool[[]byte], error) {
	if z == nil {
		z = gfp.Default()
	}
	if size <= 0 {
		return nil, fmt.Errorf("mempool: kmalloc size %d", size)
	}
	ops := genericOps[[]byte]()
	ops.check = func(b []byte) string {
		if z.PageOf(b) == nil {
			return "buffer is not from zone " + z.Name()
		}
		if cap(b) != size {
			return fmt.Sprintf("buffer of %d bytes in a pool of %d-byte buffers", cap(b), size)
		}
		return ""
	}
	alloc := func(flags gfp.Flags) ([]byte, error) { return z.Alloc(size, flags) }
	return newPool(minNr, alloc, z.Free, ops, opts)
}

// NewSlabPool creates a pool of objects of type T carved from zone z's
// kmalloc slabs (nil: the default zone), like mempool_create_slab_pool on a
// kmem_cache of T. The objects live in the zone's memory, which the garbage
// collector does not scan, so T must hold no Go pointers; NewSlabPool
// refuses a T that does. Objects come back as they were left (or poisoned,
// in debug mode); initialise them after Alloc.
func NewSlabPool[T any](minNr int, z *gfp.Zone, opts ...Option) (*Pool[*T], error) {
	if z == nil {
		z = gfp.Default()
	}
	t := reflect.TypeFor[T]()
	if hasPointers(t) {
		return nil, fmt.Errorf("mempool: slab objects of type %v hold pointers, which zone memory cannot keep alive", t)
	}
	size := max(int(t.Size()), 1)
	asBytes := func(x *T) []byte { return unsafe.Slice((*byte)(unsafe.Pointer(x)), size) }
	ops := elemOps[*T]{
		key:   func(x *T) any { return uintptr(unsafe.Pointer(x)) },
		bytes: asBytes,
		check: func(x *T) string {
			if z.PageOf(asBytes(x)) == nil {
				return "object is not from zone " + z.Name()
			}
			return ""
		},
	}
	alloc := func(flags gfp.Flags) (*T, error) {
		b, err := z.Alloc(size, flags)
		if err != nil {
			return nil, err
		}
		return (*T)(unsafe.Pointer(unsafe.SliceData(b))), nil
	}
	free := func(x *T) { z.Free(asBytes(x)) }
	return newPool(minNr, alloc, free, ops, opts)
}

// hasPointers reports whether values of t contain Go pointers.
func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return false
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	}
	return true
}
