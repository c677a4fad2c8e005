// Package mempool is the kernel's mempool (mm/mempool.c): a reserve of
// preallocated elements that guarantees forward progress to allocations
// that may sleep, even when the underlying allocator never succeeds again.
//
// A Pool[T] wraps an allocator (any func(gfp.Flags) (T, error)) and keeps
// minNr elements in reserve. Alloc first asks the allocator without direct
// reclaim or I/O, then takes from the reserve, then (first pass only) asks
// the allocator with the caller's flags, and, if the flags allow blocking,
// waits for an element to be freed: with DirectReclaim it never fails. Free
// refills the reserve before anything goes back to the allocator, and wakes
// the waiters. The guarantee holds as long as every element taken is
// returned in bounded time without needing a second element of the same
// pool; a goroutine that waits for a second element while holding one is
// the classic mempool deadlock, which debug mode reports.
//
// NewPagePool, NewKmallocPool and NewSlabPool build pools of pages, kmalloc
// buffers and objects on a gfp.Zone.
//
// # Debug mode
//
// In debug mode (on by default in test binaries, WithDebug otherwise) a pool
// tracks every element it hands out, so that it reports freeing an element
// it never handed out or freeing one twice, the elements still out at
// Close, and a goroutine that waits while holding elements of the pool; and
// it poisons the elements in its reserve (when it can see their bytes) and
// checks the poison when they come out, reporting a write after free as
// "BUG: mempool element poison mismatch".
package mempool
