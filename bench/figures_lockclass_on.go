//go:build !krules_nolockdep

package main

// compiledOutFigures is measured only in a build with validation compiled
// out: go run -tags krules_nolockdep ./bench -run "compiled out".
var compiledOutFigures []figure

// lockdepCompiledIn says whether this build validates locks.
const lockdepCompiledIn = true
