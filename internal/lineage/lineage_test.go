package lineage

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/krules/krules/internal/task"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLiveKnowsWhoStartedWhom(t *testing.T) {
	me := task.ID()
	child := make(chan int64)
	release := make(chan struct{})
	go func() {
		child <- task.ID()
		<-release
	}()
	id := <-child
	require.Equal(t, me, Live()[id])
	close(release)
}

func TestNotesAreCountedAndForgotten(t *testing.T) {
	const child, parent = 1 << 41, 7
	_, ok := Noted(child)
	require.False(t, ok)
	Note(child, parent)
	Note(child, parent)
	Forget(child)
	p, ok := Noted(child)
	require.True(t, ok, "one delivery still needs it")
	require.EqualValues(t, parent, p)
	Forget(child)
	_, ok = Noted(child)
	require.False(t, ok)
	require.Zero(t, Len())
	Forget(child) // harmless
}
