//go:build !krules_nolockdep

package dmafence

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// dma_resv_lockdep takes i_mmap_rwsem under fs_reclaim, as shrinkers that
// unmap buffers do: once primed, taking fs_reclaim under an i_mmap_rwsem
// is a circular dependency.
func TestResvPrimesIMmapRwsemAfterFSReclaim(t *testing.T) {
	krulestest.ResetDefault(t)
	rec := krulestest.Record(t)
	NewResv()
	var iMmap lockclass.RWSem
	iMmap.Init(lockclass.WithKey(&iMmapKey), lockclass.WithName("&mapping->i_mmap_rwsem"))
	iMmap.Lock()
	gfp.FSReclaimAcquire(gfp.Kernel)
	gfp.FSReclaimRelease(gfp.Kernel)
	iMmap.Unlock()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
}
