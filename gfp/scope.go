package gfp

import "github.com/krules/krules/internal/task"

// TaskFlags are the allocation-scope bits of the calling goroutine: the
// kernel's PF_MEMALLOC* bits of current->flags. They live in the goroutine's
// task record, which exists only while some bit (or other krules state) is
// set.
type TaskFlags uint32

const (
	// PFMemalloc is PF_MEMALLOC: the goroutine is freeing memory. Its
	// allocations ignore the watermarks and never enter direct reclaim,
	// and MightAlloc does not order it after fs_reclaim.
	PFMemalloc TaskFlags = 1 << iota
	// PFMemallocNoFS is PF_MEMALLOC_NOFS: every allocation behaves as if FS
	// were clear.
	PFMemallocNoFS
	// PFMemallocNoIO is PF_MEMALLOC_NOIO: every allocation behaves as if IO
	// and FS were clear.
	PFMemallocNoIO
	// PFMemallocPin is PF_MEMALLOC_PIN: every allocation behaves as if
	// Movable were clear.
	PFMemallocPin
	// PFKswapd is PF_KSWAPD: the goroutine is a zone's kswapd.
	PFKswapd
)

// MemallocSave sets flags on the calling goroutine and returns the bits it
// newly set: memalloc_flags_save(). Pass the result to MemallocRestore. A
// nested scope that finds a bit already set returns without it, so its
// restore leaves the outer scope intact.
func MemallocSave(flags TaskFlags) TaskFlags {
	t := task.Current()
	saved := flags &^ TaskFlags(t.Memalloc)
	t.Memalloc |= uint32(flags)
	if t.Memalloc == 0 {
		t.ReleaseIfEmpty()
	} else {
		t.Publish() // for -race: a goroutine may return in the scope
	}
	return saved
}

// MemallocRestore clears exactly the bits a MemallocSave returned:
// memalloc_flags_restore(). Ending the last scope drops the goroutine's
// task record if nothing else is in it.
func MemallocRestore(saved TaskFlags) {
	if saved == 0 {
		return
	}
	t := task.Lookup()
	if t == nil {
		return
	}
	t.Memalloc &^= uint32(saved)
	t.ReleaseIfEmpty()
}

// CurrentTaskFlags returns the calling goroutine's scope bits.
func CurrentTaskFlags() TaskFlags {
	if t := task.Lookup(); t != nil {
		return TaskFlags(t.Memalloc)
	}
	return 0
}

// NoFSSave opens a scope in which every allocation of the calling goroutine
// behaves as GFP_NOFS: memalloc_nofs_save(). It returns what NoFSRestore
// needs. Scopes nest.
func NoFSSave() TaskFlags { return MemallocSave(PFMemallocNoFS) }

// NoFSRestore ends the scope NoFSSave opened: memalloc_nofs_restore().
func NoFSRestore(saved TaskFlags) { MemallocRestore(saved) }

// NoIOSave opens a scope in which every allocation of the calling goroutine
// behaves as GFP_NOIO: memalloc_noio_save(). Scopes nest.
func NoIOSave() TaskFlags { return MemallocSave(PFMemallocNoIO) }

// NoIORestore ends the scope NoIOSave opened: memalloc_noio_restore().
func NoIORestore(saved TaskFlags) { MemallocRestore(saved) }

// NoReclaimSave opens a PF_MEMALLOC scope: memalloc_noreclaim_save(). The
// goroutine's allocations may use every reserve and never recurse into
// reclaim. It is for code that frees memory (reclaim itself, shrinkers);
// everything else should use a mempool. Scopes nest.
func NoReclaimSave() TaskFlags { return MemallocSave(PFMemalloc) }

// NoReclaimRestore ends the scope NoReclaimSave opened:
// memalloc_noreclaim_restore().
func NoReclaimRestore(saved TaskFlags) { MemallocRestore(saved) }

// PinSave opens a scope in which allocations avoid movable memory:
// memalloc_pin_save().
func PinSave() TaskFlags { return MemallocSave(PFMemallocPin) }

// PinRestore ends the scope PinSave opened: memalloc_pin_restore().
func PinRestore(saved TaskFlags) { MemallocRestore(saved) }

// CurrentContext applies the calling goroutine's scopes to flags:
// current_gfp_context(). A NoIO scope clears IO and FS, a NoFS scope FS, a
// pin scope Movable. It never adds bits; PF_MEMALLOC is applied by the
// allocator, not here.
func CurrentContext(flags Flags) Flags {
	if t := task.Lookup(); t != nil {
		return applyContext(flags, TaskFlags(t.Memalloc))
	}
	return flags
}

func applyContext(flags Flags, pf TaskFlags) Flags {
	if pf&(PFMemallocNoIO|PFMemallocNoFS|PFMemallocPin) == 0 {
		return flags
	}
	switch {
	case pf&PFMemallocNoIO != 0:
		flags &^= IO | FS
	case pf&PFMemallocNoFS != 0:
		flags &^= FS
	}
	if pf&PFMemallocPin != 0 {
		flags &^= Movable
	}
	return flags
}
