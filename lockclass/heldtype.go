package lockclass

// IsHeldType is lock_is_held_type: whether the calling goroutine holds l
// in mode read (-1 any, 0 write, 1 any read). known is false while
// validation is off, when the kernel answers LOCK_STATE_UNKNOWN; held is
// then false. Annotations that must not guess, such as
// dma_fence_begin_signalling's nesting test, use it instead of IsHeld.
func IsHeldType(l Lockable, read int) (held, known bool) {
	switch heldState(l, read) {
	case stateHeld:
		return true, true
	case stateNotHeld:
		return false, true
	}
	return false, false
}
