package main

// stackStrategy builds the buffer on the stack, 128 bytes at a time, as
// nouveau's nvif_object_mthd does.
var stackStrategy = strategy{
	key: "stack", label: "stack 128 B",
	lesson: "A 128-byte stack buffer (nouveau's) needs no memory and cannot fail; it pays in passes, one device command per 16 entries, cheap here and dear on a device with a slow command queue.",
	probe:  func(*device, int) (buffers, error) { return stackBuffers{}, nil },
}

const (
	stackBufBytes   = 128
	stackBufEntries = stackBufBytes / mttEntrySize
)

type stackBuffers struct{ noBuffers }

func (stackBuffers) zap(m *mirror, st *modeStats, first uint64, npages int, _ mode) error {
	var buf [stackBufEntries]uint64
	m.post(st, buf[:], first, npages)
	return nil
}
