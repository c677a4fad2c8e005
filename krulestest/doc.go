// Package krulestest provides the test helpers of krules, as net/http/httptest
// does for net/http: library packages never link package testing or goleak,
// test binaries link this one.
//
// A package's tests run under krules' rules like this:
//
//	func TestMain(m *testing.M) { krulestest.VerifyTestMain(m) }
//
//	func TestDriver(t *testing.T) {
//		krulestest.Check(t) // any report raised during the test fails it
//		// ...
//	}
//
//	func TestInversionIsReported(t *testing.T) {
//		rec := krulestest.Record(t) // the reports the test provokes on purpose
//		// ...
//		require.Equal(t, []krules.Kind{krules.CircularDependency}, rec.Kinds())
//	}
//
// Reports are attributed to the test whose goroutine raised them, or whose
// goroutine started (directly or not) the goroutine that did, so parallel
// tests each see their own (see krules.Claim).
package krulestest
