package lockclass_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

// lockdep_pin_lock, lockdep_repin_lock and lockdep_unpin_lock all return
// at once while lockdep is not enabled (!lockdep_enabled()): a lock taken,
// pinned and unpinned with validation off, or compiled out
// (-tags krules_nolockdep), gives no warning.
func TestPinsAreQuietWhileValidationIsOff(t *testing.T) {
	krulestest.Check(t)
	defer lockclass.SetEnabled(lockclass.SetEnabled(false))
	var m lockclass.Mutex
	m.Init(lockclass.WithValidator(lockclass.NewValidator()), lockclass.WithName("&rq->__lock"))
	m.Lock()
	c := lockclass.Pin(&m)
	lockclass.Unpin(&m, c)
	lockclass.Repin(&m, c)
	lockclass.Unpin(&m, c)
	m.Unlock()
}

// lockdep_repin_lock adds the cookie back to the pins the lock has, and
// warns ("pinning an unheld lock") for a lock the goroutine does not hold;
// lockdep_unpin_lock of a lock with no pin warns "unpinning an unpinned
// lock"; and an unpin with another pin's cookie leaves the count wrong,
// which shows at the release or as "pin count corrupted" (the cookies
// differ from pin to pin).
func TestRepinAndUnpinKeepTheCount(t *testing.T) {
	if !lockclass.IsEnabled() {
		t.Skip("validation compiled out")
	}
	rec := krulestest.Record(t)
	v := lockclass.NewValidator()
	var m lockclass.Mutex
	m.Init(lockclass.WithValidator(v), lockclass.WithName("&rq->__lock"))

	lockclass.Repin(&m, 1)
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "pinning an unheld lock\n")
	rec.Clear()
	require.Zero(t, lockclass.Pin(&m), "NIL_COOKIE") // __lock_pin_lock's WARN
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "pinning an unheld lock\n")
	rec.Clear()

	m.Lock()
	lockclass.Unpin(&m, 1)
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "unpinning an unpinned lock\n")
	rec.Clear()

	c1 := lockclass.Pin(&m)
	c2 := lockclass.Pin(&m)
	lockclass.Unpin(&m, c2)
	lockclass.Repin(&m, c2) // pinned twice again
	lockclass.Unpin(&m, c2)
	m.Unlock() // still pinned by c1
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Contains(t, rec.Last().Text, "releasing a pinned lock\n")
	rec.Clear()
	_ = c1

	m.Lock()
	stale := lockclass.Pin(&m)
	lockclass.Unpin(&m, stale)
	fresh := lockclass.Pin(&m)
	require.NotEqual(t, stale, fresh, "each pin has its own cookie")
	lockclass.Unpin(&m, stale) // the wrong cookie
	m.Unlock()
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	require.Regexp(t, `(releasing a pinned lock|pin count corrupted)\n`, rec.Last().Text)
}

// lockdep_enabled() is false inside lockdep_off() too (the task's
// lockdep_recursion), so lock_pin_lock returns NIL_COOKIE and pins
// nothing there, and lock_repin_lock and lock_unpin_lock do nothing: a
// lock taken before Off and "pinned" inside it is released after On
// without "releasing a pinned lock", and pin calls on an unheld lock
// inside Off are quiet.
func TestPinsDoNothingInsideOff(t *testing.T) {
	if !lockclass.IsEnabled() {
		t.Skip("validation compiled out")
	}
	rec := krulestest.Record(t)
	var m, unheld lockclass.Mutex
	v := lockclass.NewValidator()
	m.Init(lockclass.WithValidator(v), lockclass.WithName("&rq->__lock"))
	unheld.Init(lockclass.WithValidator(v), lockclass.WithName("unheld"))
	m.Lock()
	lockclass.Off()
	require.Zero(t, lockclass.Pin(&m))
	lockclass.Repin(&m, 1)
	lockclass.Pin(&unheld)
	lockclass.Repin(&unheld, 1)
	lockclass.Unpin(&unheld, 1)
	lockclass.On()
	m.Unlock()
	require.Empty(t, rec.Kinds())

	// Outside Off the same calls pin and warn, so the test above can fail.
	m.Lock()
	c := lockclass.Pin(&m)
	require.NotZero(t, c)
	lockclass.Unpin(&unheld, 1)
	require.Equal(t, []krules.Kind{krules.LockdepMisuse}, rec.Kinds())
	lockclass.Unpin(&m, c)
	m.Unlock()
}
