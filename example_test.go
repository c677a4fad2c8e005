package krules_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/krules/krules"
	"github.com/krules/krules/nonblock"
)

// A non-blockable MMU-notifier callback runs inside a non-block section, as
// the OOM reaper runs it. Sleeping there is reported at the call, whether or
// not the sleep would have blocked.
func Example_sleepInNonBlockSection() {
	reports := krules.Collect(func() {
		krules.SetName("oom_reaper")
		defer krules.SetName("")

		nonblock.Start()
		defer nonblock.End()
		nonblock.Sleep(time.Millisecond) // a callback that sleeps
	})
	for _, r := range reports {
		head, site, _ := strings.Cut(r.Headline, " at ")
		fmt.Println(r.Kind)
		fmt.Println(head, "at", filepath.Base(site[:strings.LastIndexByte(site, ':')]))
		fmt.Println(strings.Contains(r.Text, "non_block: 1, pid: "), r.Goroutine.Name)
	}
	// Output:
	// sleep-in-atomic
	// BUG: sleeping function called from invalid context at example_test.go
	// true oom_reaper
}
