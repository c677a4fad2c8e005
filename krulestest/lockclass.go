package krulestest

import (
	"testing"

	"github.com/krules/krules/lockclass"
)

// ResetDefault starts the calling test from an empty default validator
// (lockclass.Default) with validation on, and puts the previous state back
// when the test ends, so a test that provokes a report leaves nothing
// behind. Tests that call it must not run in parallel with other tests
// using the default validator; those should make their own with
// lockclass.NewValidator.
func ResetDefault(tb testing.TB) {
	tb.Helper()
	tb.Cleanup(lockclass.Default().ResetWithRestore())
}
