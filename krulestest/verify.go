package krulestest

import (
	"flag"
	"testing"

	"go.uber.org/goleak"

	"github.com/krules/krules"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mempool"
)

// Option configures VerifyTestMain and VerifyNone.
type Option func(*options)

type options struct {
	leak         []goleak.Option
	mempoolDebug bool
	contention   string // ContentionProfile's path
}

func apply(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// LeakOptions passes options to goleak, such as goleak.IgnoreTopFunction.
func LeakOptions(opts ...goleak.Option) Option {
	return func(o *options) { o.leak = append(o.leak, opts...) }
}

// MempoolDebug turns mempool's debug mode on, for the whole test binary,
// for pools created without mempool.WithDebug (mempool.SetDefaultDebug):
// element tracking and poisoning, as a debug kernel's slub_debug. It is an
// option of VerifyTestMain; VerifyNone ignores it.
func MempoolDebug() Option {
	return func(o *options) { o.mempoolDebug = true }
}

// VerifyTestMain runs a package's tests the way goleak.VerifyTestMain does,
// and also fails the package if any report was raised that no test claimed
// with Check or Record, or if a goroutine returned holding locks.
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { krulestest.VerifyTestMain(m) }
func VerifyTestMain(m *testing.M, opts ...Option) {
	o := apply(opts)
	defineContentionFlag()
	goleak.VerifyTestMain(packageRun{m, o}, o.leak...)
}

// packageRun is a package's tests (m: a *testing.M) run under the checks.
type packageRun struct {
	m interface{ Run() int }
	o options
}

func (p packageRun) Run() int {
	if p.o.mempoolDebug {
		defer mempool.SetDefaultDebug(mempool.SetDefaultDebug(true))
	}
	// The flags are parsed here rather than in m.Run, so that lock_stat
	// is on before the first test.
	if !flag.Parsed() {
		flag.Parse()
	}
	profile := p.o.contentionPath()
	if profile != "" {
		defer lockclass.SetLockStat(lockclass.SetLockStat(true))
	}
	c := krules.OpenFallbackClaim(func(r *krules.Report) { krules.Logf("%s", r.Text) })
	code := p.m.Run()
	krules.ReapExited()
	c.Close()
	if profile != "" {
		if err := writeContentionProfile(profile); err != nil {
			krules.Logf("krules: contention profile: %v", err)
			code = max(code, 1)
		}
	}
	if n := c.Len(); n > 0 {
		krules.Logf("krules: %d report(s) raised outside Check/Record during the tests (printed above)", n)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// VerifyNone checks at the end of a test that no goroutine leaked (goleak)
// and reports the goroutines that returned holding locks. It lets goleak
// wait for the test's goroutines to finish first, so that one still on its
// way out with a lock held is seen as returned, not missed.
func VerifyNone(tb testing.TB, opts ...Option) {
	tb.Helper()
	goleak.VerifyNone(tb, apply(opts).leak...)
	krules.ReapExited()
}
