package mempool

import (
	"sync/atomic"
	"time"

	"github.com/krules/krules/gfp"
)

// DefaultTimeout is how long a waiting Alloc sleeps before it tries the
// allocator again even if nothing was freed: the kernel's 5*HZ, a safety
// net, not part of the guarantee.
const DefaultTimeout = 5 * time.Second

// Option configures a pool at creation.
type Option func(*config)

type config struct {
	name    string
	gfp     gfp.Flags
	timeout time.Duration
	debug   bool
}

func newConfig(opts []Option) config {
	c := config{name: "mempool", gfp: gfp.Kernel, timeout: DefaultTimeout, debug: defaultDebug.Load()}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithName names the pool in reports and statistics.
func WithName(name string) Option { return func(c *config) { c.name = name } }

// WithGFP sets the flags used to preallocate the reserve (GFP_KERNEL by
// default, as mempool_create does; mempool_create_node takes them).
func WithGFP(flags gfp.Flags) Option { return func(c *config) { c.gfp = flags } }

// WithTimeout sets how long a waiting Alloc sleeps before it retries
// without a wake-up (DefaultTimeout unless set).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithDebug turns debug mode on or off: element tracking, poisoning of the
// reserve, and the reports they make possible, like a debug kernel's
// CONFIG_DEBUG_VM/SLUB_DEBUG_ON. Without it a pool follows SetDefaultDebug.
func WithDebug(on bool) Option { return func(c *config) { c.debug = on } }

// defaultDebug is the debug mode of pools created without WithDebug: the
// kernel's slub_debug boot parameter, off unless set.
var defaultDebug atomic.Bool

// SetDefaultDebug sets the debug mode of pools created from now on without
// WithDebug, and returns the previous setting; pools already created keep
// theirs. Test binaries turn it on with krulestest.MempoolDebug.
func SetDefaultDebug(on bool) (previous bool) { return defaultDebug.Swap(on) }
