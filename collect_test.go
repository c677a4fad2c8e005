package krules_test

import (
	"bytes"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
)

func TestCollectFuncHandsOverEveryReportAndKeepsNone(t *testing.T) {
	var out bytes.Buffer
	defer krules.SetOutput(krules.SetOutput(&out))
	var mu sync.Mutex
	var kinds []krules.Kind
	var names []string
	krules.CollectFunc(func() {
		krules.Emit(krules.Warn(krules.NotifierMisuse, "first", 0))
		done := make(chan struct{})
		krules.Go("child", func() {
			defer close(done)
			krules.Emit(krules.Warn(krules.MempoolMisuse, "second", 0))
		})
		<-done
	}, func(r *krules.Report) {
		mu.Lock()
		defer mu.Unlock()
		kinds = append(kinds, r.Kind)
		names = append(names, r.Goroutine.Name)
	})
	require.Equal(t, []krules.Kind{krules.NotifierMisuse, krules.MempoolMisuse}, kinds)
	require.Equal(t, "child", names[1])
	require.Empty(t, out.String(), "a collected report is not printed")
}
