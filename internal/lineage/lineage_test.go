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

func TestParentReadsTheCallersOwnStack(t *testing.T) {
	me := task.ID()
	type got struct {
		p  int64
		ok bool
	}
	ch := make(chan got)
	go func() {
		p, ok := Parent()
		ch <- got{p, ok}
	}()
	require.Equal(t, got{me, true}, <-ch)
	// A deep stack still ends with its creator.
	var deep func(n int) got
	deep = func(n int) got {
		if n == 0 {
			p, ok := Parent()
			return got{p, ok}
		}
		return deep(n - 1)
	}
	go func() { ch <- deep(500) }()
	require.Equal(t, got{me, true}, <-ch)
}
