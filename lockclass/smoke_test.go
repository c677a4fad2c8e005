package lockclass_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/lockclass"
)

func TestMain(m *testing.M) { krules.VerifyTestMain(m) }

func TestSmokeABBA(t *testing.T) {
	rec := krules.Record(t)
	v := lockclass.NewValidator()
	var a, b lockclass.Mutex
	a.Init(lockclass.WithValidator(v), lockclass.WithName("A"))
	b.Init(lockclass.WithValidator(v), lockclass.WithName("B"))
	a.Lock()
	b.Lock()
	b.Unlock()
	a.Unlock()
	require.Zero(t, rec.Len())
	b.Lock()
	a.Lock()
	a.Unlock()
	b.Unlock()
	require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
	fmt.Println(rec.Last().Text)
}
