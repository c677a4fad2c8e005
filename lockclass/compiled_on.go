//go:build !krules_nolockdep

package lockclass

// compiledIn says whether validation is compiled in; build with
// -tags krules_nolockdep to compile it out (the locks become plain locks with
// the same API).
const compiledIn = true
