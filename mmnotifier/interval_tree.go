package mmnotifier

// intervalTree is the kernel's interval_tree (include/linux/interval_tree.h)
// for interval notifiers: closed intervals [start, last] kept in an AVL tree
// ordered by start, each node augmented with the largest last in its subtree
// so that a stabbing query visits only subtrees that can overlap. Finding the
// k intervals that overlap a range costs O(log n + k); insert and remove cost
// O(log n). Equal starts are ordered by insertion, so every node has a unique
// place and removal needs no search.
//
// The tree is not safe for concurrent modification; the subscriptions lock
// guards it. Concurrent queries are safe while nobody modifies it, which is
// how invalidations walk it: the tree is frozen while the sequence is odd.
type intervalTree[T any] struct {
	root *itNode[T]
	size int
	seq  uint64
}

type itNode[T any] struct {
	start, last uint64
	maxLast     uint64 // largest last in this subtree
	seq         uint64 // tie-breaker for equal starts
	height      int8
	left, right *itNode[T]
	value       T
}

// less orders nodes by (start, seq).
func (n *itNode[T]) less(o *itNode[T]) bool {
	if n.start != o.start {
		return n.start < o.start
	}
	return n.seq < o.seq
}

func (t *intervalTree[T]) Len() int { return t.size }

// Insert adds [start, last] (start <= last) and returns its node, the handle
// Remove takes.
func (t *intervalTree[T]) Insert(start, last uint64, value T) *itNode[T] {
	n := &itNode[T]{start: start, last: last, value: value}
	t.Link(n)
	return n
}

// Link adds a node the caller made, with start, last and value set, which
// is not in a tree. It allocates nothing, so it may run where allocating
// may not (under a spin lock).
func (t *intervalTree[T]) Link(n *itNode[T]) {
	t.seq++
	n.maxLast, n.seq, n.height, n.left, n.right = n.last, t.seq, 1, nil, nil
	t.root = insertNode(t.root, n)
	t.size++
}

// Remove deletes a node returned by Insert. It reports whether the node was
// in the tree.
func (t *intervalTree[T]) Remove(n *itNode[T]) bool {
	var removed bool
	t.root, removed = removeNode(t.root, n)
	if removed {
		t.size--
		n.left, n.right = nil, nil
	}
	return removed
}

// Visit calls fn, in order of start, for every interval that overlaps
// [start, last], until fn returns false. It returns the number of nodes it
// examined; tests use it to show queries stay O(log n + k).
func (t *intervalTree[T]) Visit(start, last uint64, fn func(n *itNode[T]) bool) (examined int) {
	var it itIter[T]
	for n := it.first(t, start, last); n != nil; n = it.next() {
		if !fn(n) {
			break
		}
	}
	return it.examined
}

// First returns the overlapping interval with the smallest start, or nil:
// interval_tree_iter_first.
func (t *intervalTree[T]) First(start, last uint64) *itNode[T] {
	var it itIter[T]
	return it.first(t, start, last)
}

// itIter walks the intervals that overlap [start, last] in order of start
// (interval_tree_iter_first/_next) without allocating: its stack holds the
// nodes still to visit, each above the subtrees left of it, and lives in the
// iterator, which lives on the caller's stack. A node is pushed only if its
// subtree reaches start (maxLast), and the walk stops at the first node that
// starts after last, since everything still on the stack starts later.
type itIter[T any] struct {
	start, last uint64
	// stack[:depth] are the nodes to visit, innermost last. Its size
	// bounds the tree's height, and an AVL tree of 2^32 nodes is at most
	// 46 high. (An array and an index rather than a slice of it: a slice
	// into itself would move the iterator to the heap.)
	stack    [48]*itNode[T]
	depth    int
	examined int
}

// first starts a walk of t and returns its first interval, or nil.
func (it *itIter[T]) first(t *intervalTree[T], start, last uint64) *itNode[T] {
	it.start, it.last = start, last
	it.depth = 0
	it.push(t.root)
	return it.next()
}

// push stacks n and its left spine, as far as the subtrees can overlap.
func (it *itIter[T]) push(n *itNode[T]) {
	for n != nil && n.maxLast >= it.start {
		it.examined++
		it.stack[it.depth] = n
		it.depth++
		n = n.left
	}
}

// next returns the walk's next interval, or nil at the end.
func (it *itIter[T]) next() *itNode[T] {
	for it.depth > 0 {
		it.depth--
		n := it.stack[it.depth]
		if n.start > it.last {
			it.depth = 0
			return nil
		}
		it.push(n.right)
		if n.last >= it.start {
			return n
		}
	}
	return nil
}

func height[T any](n *itNode[T]) int8 {
	if n == nil {
		return 0
	}
	return n.height
}

// update recomputes n's height and maxLast from its children.
func update[T any](n *itNode[T]) {
	n.height = max(height(n.left), height(n.right)) + 1
	n.maxLast = n.last
	if n.left != nil && n.left.maxLast > n.maxLast {
		n.maxLast = n.left.maxLast
	}
	if n.right != nil && n.right.maxLast > n.maxLast {
		n.maxLast = n.right.maxLast
	}
}

func rotateRight[T any](n *itNode[T]) *itNode[T] {
	l := n.left
	n.left, l.right = l.right, n
	update(n)
	update(l)
	return l
}

func rotateLeft[T any](n *itNode[T]) *itNode[T] {
	r := n.right
	n.right, r.left = r.left, n
	update(n)
	update(r)
	return r
}

func rebalance[T any](n *itNode[T]) *itNode[T] {
	update(n)
	switch bal := height(n.left) - height(n.right); {
	case bal > 1:
		if height(n.left.left) < height(n.left.right) {
			n.left = rotateLeft(n.left)
		}
		return rotateRight(n)
	case bal < -1:
		if height(n.right.right) < height(n.right.left) {
			n.right = rotateRight(n.right)
		}
		return rotateLeft(n)
	}
	return n
}

func insertNode[T any](root, n *itNode[T]) *itNode[T] {
	if root == nil {
		return n
	}
	if n.less(root) {
		root.left = insertNode(root.left, n)
	} else {
		root.right = insertNode(root.right, n)
	}
	return rebalance(root)
}

func removeNode[T any](root, n *itNode[T]) (*itNode[T], bool) {
	if root == nil {
		return nil, false
	}
	var removed bool
	switch {
	case root == n:
		if root.left == nil {
			return root.right, true
		}
		if root.right == nil {
			return root.left, true
		}
		// Replace n by its successor, the leftmost node on the right.
		var succ *itNode[T]
		right := takeMin(root.right, &succ)
		succ.left, succ.right = root.left, right
		return rebalance(succ), true
	case n.less(root):
		root.left, removed = removeNode(root.left, n)
	default:
		root.right, removed = removeNode(root.right, n)
	}
	if !removed {
		return root, false
	}
	return rebalance(root), true
}

// takeMin unlinks the leftmost node of the subtree into *min and returns the
// rebalanced rest.
func takeMin[T any](n *itNode[T], min **itNode[T]) *itNode[T] {
	if n.left == nil {
		*min = n
		return n.right
	}
	n.left = takeMin(n.left, min)
	return rebalance(n)
}
