package nonblock_test

import (
	"fmt"
	"regexp"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/nonblock"
)

// A callback inside a non-block section sleeps with time.Sleep rather than
// nonblock.Sleep: no might-sleep check announces it, but the execution trace
// shows the goroutine blocked, as the kernel's schedule() would have seen.
func ExampleStartTraceCheck() {
	reports := krules.Collect(func() {
		tc, err := nonblock.StartTraceCheck(nonblock.IgnoreAllocBlocks())
		if err != nil {
			fmt.Println(err)
			return
		}
		done := make(chan struct{})
		krules.Go("oom_reaper", func() {
			defer close(done)
			nonblock.Start()
			time.Sleep(time.Millisecond)
			nonblock.End()
		})
		<-done
		_ = tc.Stop()
	})
	pid := regexp.MustCompile(`/\d+/`)
	for _, r := range reports {
		fmt.Println(r.Kind)
		fmt.Println(pid.ReplaceAllString(r.Headline, "/PID/"))
	}
	// Output:
	// schedule-in-non-block
	// BUG: scheduling in a non-blocking section: oom_reaper/PID/1
}
