package krules_test

import (
	"regexp"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/nonblock"
)

func TestMain(m *testing.M) { krulestest.VerifyTestMain(m) }

func TestWarnNamesTheCallerAndLaysOutACutHereBlock(t *testing.T) {
	rec := krulestest.Record(t)
	krules.Emit(krules.Warn(krules.NotifierMisuse, "callback failed with -11 in blockable context", 0))
	r := rec.Last()
	require.Equal(t, krules.NotifierMisuse, r.Kind)
	require.Regexp(t, `^WARNING: CPU: - PID: \d+ at krules/krules_test.go:\d+ krules_test.TestWarnNamesTheCallerAndLaysOutACutHereBlock\+0x[0-9a-f]+$`, r.Headline)
	require.Regexp(t, regexp.MustCompile(`(?s)^------------\[ cut here \]------------\n`+
		`callback failed with -11 in blockable context\n`+
		regexp.QuoteMeta(r.Headline)+`\n`+
		`Modules linked in:\n`+
		`CPU: - UID: \d+ PID: \d+ Comm: TestWarnNamesTheCallerAndLaysOutACutHereBlock (Not tainted|Tainted: G +W {9}) krules go[^\n]*\n`+
		`(Tainted: \[W\]=WARN\n)?Call Trace:\n <TASK>\n krules_test.TestWarnNamesTheCallerAndLaysOutACutHereBlock\+0x[0-9a-f]+ krules/krules_test.go:\d+\n.* </TASK>\n`+
		`---\[ end trace 0000000000000000 \]---\n$`), r.Text)
}

func TestReportOnAGoroutineTheTestStartedIsAttributedToIt(t *testing.T) {
	rec := krulestest.Record(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		nonblock.Start()
		nonblock.MightSleep()
		nonblock.End()
	}()
	wg.Wait()
	require.Equal(t, []krules.Kind{krules.SleepInAtomic}, rec.Kinds())
}

// With two tests claiming at once, a report goes to the test whose
// goroutine (or an ancestor of it) raised it.
func TestParallelTestsGetTheirOwnReports(t *testing.T) {
	for _, n := range []int{1, 2} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			t.Parallel()
			rec := krulestest.Record(t)
			var wg sync.WaitGroup
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					krules.Emit(krules.Warn(krules.MempoolMisuse, "x", 0))
				}()
			}
			wg.Wait()
			require.Equal(t, n, rec.Len())
		})
	}
}

func TestSetNameShowsInReportsAndClears(t *testing.T) {
	rec := krulestest.Record(t)
	done := make(chan int64)
	krules.Go("kworker/0:1", func() {
		nonblock.StartAtomic()
		nonblock.MightSleep()
		nonblock.EndAtomic()
		done <- krules.CurrentGoroutine().ID
	})
	id := <-done
	r := rec.Last()
	require.Equal(t, krules.Goroutine{ID: id, Name: "kworker/0:1"}, r.Goroutine)
	require.Contains(t, r.Text, "pid: "+strconv.FormatInt(id, 10)+", name: kworker/0:1\n")
	require.Equal(t, "kworker/0:1/"+strconv.FormatInt(id, 10), r.Goroutine.String())
}

func TestUnnamedGoroutinesAreNamedAfterTheirTest(t *testing.T) {
	require.Equal(t, "TestUnnamedGoroutinesAreNamedAfterTheirTest", krules.CurrentGoroutine().Name)
}
