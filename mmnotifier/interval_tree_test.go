package mmnotifier

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// checkInvariants verifies the AVL balance, the order and the maxLast
// augmentation of every node, and returns the subtree's size.
func checkInvariants[T any](t testing.TB, n *itNode[T], lo *itNode[T]) int {
	if n == nil {
		return 0
	}
	size := 1 + checkInvariants(t, n.left, lo) + checkInvariants(t, n.right, n)
	require.LessOrEqual(t, abs(int(height(n.left))-int(height(n.right))), 1, "AVL balance")
	require.Equal(t, max(height(n.left), height(n.right))+1, n.height)
	want := n.last
	if n.left != nil {
		require.True(t, n.left.less(n), "left child orders before its parent")
		want = max(want, n.left.maxLast)
	}
	if n.right != nil {
		require.True(t, n.less(n.right), "right child orders after its parent")
		want = max(want, n.right.maxLast)
	}
	require.Equal(t, want, n.maxLast, "maxLast is the subtree's largest last")
	return size
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

type model struct{ start, last uint64 }

// overlapping answers a query by brute force, in the tree's order.
func overlapping(live map[*itNode[int]]model, start, last uint64) []*itNode[int] {
	var out []*itNode[int]
	for n, m := range live {
		if m.start <= last && m.last >= start {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b *itNode[int]) int {
		if a.less(b) {
			return -1
		}
		return 1
	})
	return out
}

// FuzzIntervalTree drives inserts, removes and queries from the fuzzer's
// bytes and compares every query with a brute-force model.
func FuzzIntervalTree(f *testing.F) {
	f.Add([]byte{0, 1, 5, 0, 3, 9, 2, 2, 4, 1, 0, 0, 2, 0, 255})
	f.Add([]byte{0, 10, 0, 0, 10, 0, 0, 10, 0, 2, 10, 10, 1, 1, 0, 2, 0, 255})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var tree intervalTree[int]
		live := map[*itNode[int]]model{}
		var nodes []*itNode[int]
		for len(ops) >= 3 {
			op, a, b := ops[0]%3, uint64(ops[1]), uint64(ops[2])
			ops = ops[3:]
			start, last := min(a, b), max(a, b)
			switch op {
			case 0:
				n := tree.Insert(start, last, len(nodes))
				nodes = append(nodes, n)
				live[n] = model{start, last}
			case 1:
				if len(nodes) == 0 {
					continue
				}
				n := nodes[int(a)%len(nodes)]
				_, wasLive := live[n]
				require.Equal(t, wasLive, tree.Remove(n))
				delete(live, n)
			case 2:
				var got []*itNode[int]
				tree.Visit(start, last, func(n *itNode[int]) bool { got = append(got, n); return true })
				require.Equal(t, overlapping(live, start, last), got)
				if want := overlapping(live, start, last); len(want) > 0 {
					require.Same(t, want[0], tree.First(start, last))
				} else {
					require.Nil(t, tree.First(start, last))
				}
			}
			require.Equal(t, len(live), tree.Len())
			require.Equal(t, len(live), checkInvariants(t, tree.root, nil))
		}
	})
}

func TestVisitStopsWhenTold(t *testing.T) {
	var tree intervalTree[int]
	for i := range 10 {
		tree.Insert(uint64(i), uint64(i+5), i)
	}
	var seen []int
	tree.Visit(3, 4, func(n *itNode[int]) bool { seen = append(seen, n.value); return len(seen) < 2 })
	require.Equal(t, []int{0, 1}, seen)
}

// Intervals with the same start are visited in the order they were
// inserted, as the kernel's interval tree links an equal start to the
// right; removing one keeps the others' order.
func TestEqualStartsKeepTheirInsertionOrder(t *testing.T) {
	var tree intervalTree[int]
	var nodes []*itNode[int]
	for i := range 5 {
		nodes = append(nodes, tree.Insert(0x1000, 0x1fff+uint64(i), i))
	}
	visit := func() (seen []int) {
		tree.Visit(0x1000, 0x1000, func(n *itNode[int]) bool { seen = append(seen, n.value); return true })
		return seen
	}
	require.Equal(t, []int{0, 1, 2, 3, 4}, visit())
	require.True(t, tree.Remove(nodes[2]))
	require.Equal(t, []int{0, 1, 3, 4}, visit())
}

// Removing a node with two children puts its successor, the leftmost node
// of its right subtree, in its place: every node on the way down to the
// successor loses a descendant, so each gets its height and maxLast
// recomputed and is rebalanced. Here the leftmost node of a subtree also
// has its largest last, so a stale maxLast shows as well as a stale height.
func TestRemovingANodeWithTwoChildrenKeepsTheInvariants(t *testing.T) {
	var tree intervalTree[int]
	for i := range 64 {
		tree.Insert(uint64(i), 1000-uint64(i), i)
	}
	for tree.root != nil {
		require.True(t, tree.Remove(tree.root))
		require.Equal(t, tree.Len(), checkInvariants(t, tree.root, nil))
	}
}

// A stabbing query over many intervals touches O(log n + k) nodes, not n.
func TestQueryVisitsFewNodes(t *testing.T) {
	var tree intervalTree[int]
	const n = 100_000
	for i := range n {
		tree.Insert(uint64(i)*16, uint64(i)*16+7, i)
	}
	require.Equal(t, n, checkInvariants(t, tree.root, nil))
	require.LessOrEqual(t, int(tree.root.height), 25, "an AVL tree of 100k nodes is shallow")
	for _, k := range []int{1, 10, 100} {
		hits := 0
		from := uint64(16 * 5000)
		examined := tree.Visit(from, from+uint64(16*k)-1, func(*itNode[int]) bool { hits++; return true })
		require.Equal(t, k, hits)
		require.LessOrEqual(t, examined, 2*25+2*k, "a query examines O(log n + k) nodes")
	}
}
