package list_test

import (
	"container/list"
	"testing"

	"github.com/stretchr/testify/require"

	ilist "github.com/krules/krules/internal/list"
)

type item struct {
	links ilist.Links[item]
	v     int
}

func values(l *ilist.List[item]) []int {
	var out []int
	for k := l.Front(); k != nil; k = k.Next() {
		out = append(out, k.Elem().v)
	}
	return out
}

func TestList(t *testing.T) {
	var l ilist.List[item]
	require.True(t, l.Empty())
	a, b, c, d := &item{v: 1}, &item{v: 2}, &item{v: 3}, &item{v: 4}
	l.PushBack(b, &b.links)
	l.PushBack(c, &c.links)
	l.PushFront(a, &a.links)
	l.PushBack(d, &d.links)
	require.Equal(t, []int{1, 2, 3, 4}, values(&l))
	l.Remove(&c.links)
	require.Equal(t, []int{1, 2, 4}, values(&l))
	l.Remove(&a.links)
	l.Remove(&d.links)
	require.Equal(t, []int{2}, values(&l))
	require.Same(t, b, l.Front().Elem())
	l.Remove(&b.links)
	require.True(t, l.Empty())
	require.Nil(t, l.Front())
	l.PushFront(c, &c.links) // removed elements can be reused
	require.Equal(t, []int{3}, values(&l))
	require.Zero(t, testing.AllocsPerRun(100, func() { l.PushBack(a, &a.links); l.Remove(&a.links) }))
}

// Both ends stay right through every change: a push at the front of an
// empty list is also its tail, the old head learns its new predecessor,
// and removing the tail moves it back (list_add, list_add_tail, list_del).
// A removed element's links are cleared, as list_del_init leaves them.
func TestListKeepsBothEndsAndClearsRemovedLinks(t *testing.T) {
	var l ilist.List[item]
	a, b, c := &item{v: 1}, &item{v: 2}, &item{v: 3}
	l.PushFront(a, &a.links)
	l.PushBack(b, &b.links)
	require.Equal(t, []int{1, 2}, values(&l), "the front push of an empty list is its tail too")
	l.PushFront(c, &c.links)
	l.Remove(&a.links)
	require.Equal(t, []int{3, 2}, values(&l), "the old head knew its new predecessor")
	l.Remove(&b.links)
	l.PushBack(a, &a.links)
	require.Equal(t, []int{3, 1}, values(&l), "removing the tail moved it back")
	require.Nil(t, b.links.Next())
	require.Nil(t, b.links.Elem())
	l.Remove(&c.links)
	require.Nil(t, c.links.Next(), "a removed head's links are cleared too")
	require.Same(t, a, l.Front().Elem())
}

// BenchmarkList is a push+remove pair.
func BenchmarkList(b *testing.B) {
	var l ilist.List[item]
	x, y := &item{}, &item{}
	l.PushBack(y, &y.links)
	for b.Loop() {
		l.PushBack(x, &x.links)
		l.Remove(&x.links)
	}
}

// BenchmarkContainerList is what container/list would cost.
func BenchmarkContainerList(b *testing.B) {
	l := list.New()
	l.PushBack(2)
	for b.Loop() {
		l.Remove(l.PushBack(1))
	}
}

type hand struct{ next, prev *hand }

type handList struct{ head, tail *hand }

func (q *handList) push(w *hand) {
	w.next, w.prev = nil, q.tail
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
}

func (q *handList) remove(w *hand) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.next, w.prev = nil, nil
}

// BenchmarkHandWritten is the lists this package replaced.
func BenchmarkHandWritten(b *testing.B) {
	var l handList
	x, y := &hand{}, &hand{}
	l.push(y)
	for b.Loop() {
		l.push(x)
		l.remove(x)
	}
}
