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

// Live sees every live goroutine however long the dump of all of them is
// (past its first 64 KiB buffer), and the main goroutine, which no
// goroutine created, with creator 0: a goroutine missing from Live would be
// taken for one that returned.
func TestLiveSeesEveryGoroutineAndMain(t *testing.T) {
	const n = 1000
	me := task.ID()
	ids := make(chan int64, n)
	release := make(chan struct{})
	defer close(release)
	for range n {
		go func() {
			ids <- task.ID()
			<-release
		}()
	}
	live := Live()
	for range n {
		id := <-ids
		p, ok := live[id]
		require.True(t, ok, "goroutine %d", id)
		require.Equal(t, me, p)
	}
	p, ok := live[1] // the test binary's main goroutine
	require.True(t, ok)
	require.Zero(t, p)
}
