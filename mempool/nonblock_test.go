package mempool_test

import "github.com/krules/krules/nonblock"

func nonblockStart() { nonblock.Start() }
func nonblockEnd()   { nonblock.End() }
