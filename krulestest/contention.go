package krulestest

import (
	"flag"
	"fmt"
	"os"

	"github.com/krules/krules/lockclass"
)

// contentionFlag is the command-line form of ContentionProfile, which
// VerifyTestMain defines: go test -krules.contentionprofile=FILE.
const contentionFlag = "krules.contentionprofile"

// ContentionProfile is an option of VerifyTestMain: lock_stat is on while
// the package's tests run (lockclass.SetLockStat) and, when they end, the
// waits on the default validator's locks are written to path as a pprof
// contention profile (lockclass.Validator.WriteContentionProfile), as go
// test -mutexprofile writes Go's own, which cannot see these locks: they
// wait on channels. go tool pprof reads the file. A relative path is
// relative to the package's directory, where go test runs the binary.
// Without the option, the same is asked for on the command line:
//
//	go test ./drv -krules.contentionprofile=contention.pb.gz
//
// A test that gives itself a fresh default validator (ResetDefault) keeps
// its waits out of the profile.
func ContentionProfile(path string) Option {
	return func(o *options) { o.contention = path }
}

// defineContentionFlag defines -krules.contentionprofile on the command
// line's flag set once, for VerifyTestMain, before the test binary parses
// its flags.
func defineContentionFlag() {
	if flag.Lookup(contentionFlag) == nil {
		flag.String(contentionFlag, "", "write the waits on krules locks as a pprof contention profile to `file` after the tests")
	}
}

// contentionPath is where the run writes its contention profile: the
// option's path, else the flag's, else nowhere.
func (o options) contentionPath() string {
	if o.contention != "" {
		return o.contention
	}
	if f := flag.Lookup(contentionFlag); f != nil {
		return f.Value.String()
	}
	return ""
}

// writeContentionProfile writes the default validator's contention
// profile to path.
func writeContentionProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := lockclass.Default().WriteContentionProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}
