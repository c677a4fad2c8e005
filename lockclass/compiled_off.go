//go:build krules_nolockdep

package lockclass

// compiledIn says whether validation is compiled in; this build has it
// compiled out (-tags krules_nolockdep): the locks are plain locks, the
// annotations do nothing, and the views say so.
const compiledIn = false
