package dmafence

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// dma_fence_context_counter starts at 1, so dma_fence_context_alloc never
// hands out context 0 (the stub fence's): from a fresh counter the first
// reservation starts at 1 and the next follows it.
func TestContextAllocNeverHandsOutZero(t *testing.T) {
	old := contextCounter.Load()
	contextCounter.Store(0)
	t.Cleanup(func() { contextCounter.Add(old) })
	require.Equal(t, uint64(1), ContextAlloc(2))
	require.Equal(t, uint64(3), ContextAlloc(1))
}
