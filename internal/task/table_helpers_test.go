package task

// trim retires idle nodes beyond the first idlePerBucket.
func (b *bucket) trim() {
	b.lock()
	b.trimLocked()
	b.unlock()
}

// nodeCount returns the number of nodes, busy or idle, across all buckets.
// Tests use it to show that churn does not grow the table.
func nodeCount() int {
	n := 0
	for i := range table {
		n += int(table[i].nodes.Load())
	}
	return n
}
