//go:build !krules_nolockdep

package mempool_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
	"github.com/krules/krules/mempool"
)

// mempool_alloc_noprof calls might_alloc itself, inlined there, and
// fs_reclaim_acquire takes fs_reclaim with _RET_IP_: a lock held around
// Alloc or AllocContext, after fs_reclaim -> lock was learnt, is reported
// with fs_reclaim's "at:" in the entry, not in the pool's helpers.
func TestFSReclaimAtNamesThePoolEntry(t *testing.T) {
	for _, name := range []string{"Alloc", "AllocContext"} {
		t.Run(name, func(t *testing.T) {
			krulestest.ResetDefault(t)
			rec := krulestest.Record(t)
			s := &source{}
			p, err := mempool.New(1, s.alloc, s.free, mempool.WithName("bio"))
			require.NoError(t, err)
			defer func() { require.NoError(t, p.Close()) }()
			var l lockclass.Mutex
			l.Init(lockclass.WithName("&drv->lock"))
			gfp.FSReclaimAcquire(gfp.Kernel) // priming: fs_reclaim -> &drv->lock
			l.Lock()
			l.Unlock()
			gfp.FSReclaimRelease(gfp.Kernel)
			l.Lock()
			var x *int
			if name == "Alloc" {
				x, err = p.Alloc(gfp.Kernel)
			} else {
				x, err = p.AllocContext(context.Background(), gfp.Kernel)
			}
			l.Unlock()
			require.NoError(t, err)
			p.Free(x)
			require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
			require.Regexp(t, `is trying to acquire lock:\n[0-9a-f]{16} \(fs_reclaim\)\{\+\.\+\.\}-\{0:0\}, at: mempool\.\(\*Pool\[\.\.\.\]\)\.`+name+`\+0x[0-9a-f]+ mempool/alloc\.go:\d+\n`, rec.Last().Text)
		})
	}
}
