// Package gfp brings the kernel's allocation rules to goroutines: GFP flags
// that say what an allocation may do, allocation scopes on the calling
// goroutine, might_alloc() and the fs_reclaim lock map that let lockdep
// prove reclaim deadlocks without memory pressure, and a real page allocator
// over mmap'd memory that behaves as the kernel's does under pressure.
//
// # Flags and scopes
//
// Flags are the kernel's gfp_t bits and masks (Kernel, Atomic, NoWait,
// NoIO, NoFS, ...), printed the way the kernel prints them
// ("GFP_KERNEL|__GFP_ZERO"). NoFSSave/NoFSRestore, NoIOSave/NoIORestore and
// NoReclaimSave/NoReclaimRestore open scopes on the calling goroutine that
// every allocation it makes honours, nesting as memalloc_flags_save does.
//
// # MightAlloc and fs_reclaim
//
// Every allocation calls MightAlloc: if it could enter reclaim, the
// fs_reclaim lock map (FSReclaimMap) is acquired and released, ordering
// every lock the caller holds before reclaim; reclaim itself holds the map
// for real while it runs shrinkers. A lock held across a GFP_KERNEL
// allocation that a shrinker also takes is therefore reported as a circular
// locking dependency the first time both have happened.
//
// # Zones
//
// A Zone is a buddy allocator over a fixed arena, with watermarks and the
// kernel's reserve rules (GFP_ATOMIC may use 62.5% of the min reserve,
// __GFP_HIGH half of it, PF_MEMALLOC all of it), a slow path that wakes
// kswapd, reclaims through registered Shrinkers (waiting for kswapd first
// while free pages are at or under half the min watermark, as
// throttle_direct_reclaim does) and retries as the flags allow, an OOM
// hook, fault injection and vmstat-style statistics. Alloc and Free give
// kmalloc-style sizes on top. Failures return ErrNoMemory
// and, unless NoWarn, report "page allocation failure: order:N, mode:…".
//
// # vmalloc and kvmalloc
//
// Vmalloc (mm/vmalloc.c) builds a virtually contiguous buffer from single
// pages of the same zone, wherever they lie: on Linux the arena is a memfd,
// so each page is mapped a second time into a reserved range, as the kernel
// maps pages into its vmalloc area. It may sleep and always allocates its
// page tables with GFP_KERNEL (the allocation scope still applies), so it
// is might_sleep and might_alloc whatever the flags. Kvmalloc tries Alloc
// first without retrying or warning above a page, and falls back to
// Vmalloc only for flags that allow blocking, as kvmalloc_node does.
// Where the arena cannot be remapped (huge pages, the heap arena off
// Linux), Vmalloc takes one contiguous block instead.
//
// The package functions AllocPages, Alloc, Free, Vmalloc, Vfree, Kvmalloc
// and Kvfree use a default zone (Default) created on first use.
package gfp
