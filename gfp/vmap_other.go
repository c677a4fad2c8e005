//go:build !linux

package gfp

import (
	"errors"
	"unsafe"
)

// Without memfd the arena's pages cannot be mapped twice: vmalloc takes
// physically contiguous blocks instead (vmalloc.go).

func mapShared(int, int) (full, mem []byte, file int) { return nil, nil, -1 }

func vmap(int, []int32) (unsafe.Pointer, error) { return nil, errors.New("gfp: no vmap here") }

func vunmap(unsafe.Pointer, int) error { return nil }
