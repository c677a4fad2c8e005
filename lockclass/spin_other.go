//go:build !amd64

package lockclass

// procyield is plain spinning elsewhere: n iterations of an empty loop.
//
//go:noinline
func procyield(n uint32) {
	for range n {
	}
}
