package gfp_test

import (
	"fmt"
	"math/bits"
	"slices"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/gfp"
	"github.com/krules/krules/krulestest"
)

// kmallocClass is kmalloc_index: the size of the cache serving size (1 to
// KMALLOC_MAX_CACHE_SIZE), with the two non-power-of-two caches 96 and
// 192 taking 65..96 and 129..192.
func kmallocClass(size int) int {
	switch {
	case size <= 8:
		return 8
	case size > 64 && size <= 96:
		return 96
	case size > 128 && size <= 192:
		return 192
	}
	return 1 << bits.Len(uint(size-1))
}

// kmallocCacheName is the cache's name as kmalloc_info gives it.
func kmallocCacheName(class int) string {
	if class >= 1024 {
		return fmt.Sprintf("kmalloc-%dk", class/1024)
	}
	return fmt.Sprintf("kmalloc-%d", class)
}

// fuzzSize turns one byte into a size: the low five bits step through one
// of eight ranges the high three pick, which cross every class boundary,
// KMALLOC_MAX_CACHE_SIZE and the orders of kmalloc_large; the last range
// is the class sizes themselves, then whole pages.
func fuzzSize(x byte) int {
	m := int(x & 31)
	switch x >> 5 {
	case 0:
		return 1 + m
	case 1:
		return 33 + 5*m
	case 2:
		return 190 + 10*m
	case 3:
		return 500 + 50*m
	case 4:
		return 2000 + 200*m
	case 5:
		return gfp.KmallocMaxCacheSize - 12 + m
	case 6:
		return gfp.KmallocMaxCacheSize + 1 + 800*m
	}
	if classes := []int{8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192}; m < len(classes) {
		return classes[m]
	}
	return (m - 12) * gfp.PageSize
}

// kmallocObj is an object the model holds: what Alloc returned, its size
// and whether kmalloc_large served it, and the byte it was marked with.
type kmallocObj struct {
	b     []byte
	large bool
	mark  byte
}

// kmallocModel is kmalloc and kfree over one zone, reduced to what a
// caller sees: the live objects, the counters of the size classes, the
// pages kmalloc_large holds, and the reports bad frees raise. bad_page's
// burst of 60 holds for the whole script, which runs well within its
// minute.
type kmallocModel struct {
	live       []kmallocObj
	kmallocs   int64
	kfrees     int64
	largePages int64
	reports    []kmallocReport
	badPages   int
	marks      byte
}

// kmallocReport is a report the model expects: its kind and a pattern its
// headline (or, for bad_page, its text) must match.
type kmallocReport struct {
	kind krules.Kind
	re   string
}

func (m *kmallocModel) report(kind krules.Kind, re string) {
	if kind == krules.BadPage {
		m.badPages++
		if m.badPages > 60 {
			return // bad_page's ratelimit: quiet, but not reported
		}
	}
	m.reports = append(m.reports, kmallocReport{kind, re})
}

// largeOrder is get_order(size): kmalloc_large's block.
func largeOrder(size int) int { return bits.Len(uint((size - 1) >> gfp.PageShift)) }

func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// FuzzKmallocAgainstModel runs a script of kmallocs of sizes across every
// size class and kmalloc_large (some with __GFP_ZERO, some of 0 bytes),
// kfrees of live objects, and bad kfrees: a second kfree right after the
// first, a pointer into an object, memory of no zone, and a page of the
// page allocator. It checks every step against kmallocModel: each object
// has the size asked for, is aligned as its cache's objects are (kmalloc's
// power-of-two alignment, a page for kmalloc_large) and overlaps no live
// object; the marks of live objects survive; Kmallocs and Kfrees count the
// size classes' calls; every page is free, cached, in a slab or held by
// kmalloc_large; the bytes live in the classes fit in their slab pages;
// and each bad kfree raises one report, of SLUB's SlabError kind ("Object
// already free", "Invalid object pointer", "Object is not a Slab page!")
// or bad_page's BadPage, and leaves the object or block as it was, so
// that freeing everything afterwards gives every page back. Each byte is
// one step: the low three bits the operation, the rest its argument; an
// allocation takes one byte more, its size.
func FuzzKmallocAgainstModel(f *testing.F) {
	// sizes of every range, all freed, two through a slice of their first bytes
	f.Add([]byte{0, 0x00, 0, 0x40, 0, 0x80, 0, 0xc0, 0, 0xe2, 1, 1 | 17<<3, 1, 1 | 19<<3})
	// double frees from kmalloc-8 to kmalloc-8k and of a large block
	f.Add([]byte{0, 0x23, 2, 0, 0xa0 | 12, 2, 0, 0xa0 | 13, 2, 0, 0x00, 2, 0, 0x20 | 7, 2, 0, 0x20 | 24, 2, 0, 0xe0 | 31, 3, 1})
	// a pointer into an object and into a large block; foreign memory; a page
	f.Add([]byte{0, 0x50, 3, 0, 0xc0 | 5, 3 | 1<<3, 4, 5, 1, 1})
	// __GFP_ZERO, kmalloc(0), kfree of an empty slice of a live object
	f.Add([]byte{0 | 1<<3, 0xe0 | 31, 0 | 1<<3, 0x07, 0, 0x00, 6, 1, 6 | 1<<3, 1, 1})
	// 40 kmalloc-8k objects, 20 double frees: the magazine drains
	f.Add(slices.Repeat([]byte{0, 0xe0 | 12, 0, 0xe0 | 12, 2}, 20))
	// 65 large double frees: bad_page's burst of 60
	f.Add(append(slices.Repeat([]byte{0, 0xe0 | 20, 2}, 65), 5))
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 200 {
			script = script[:200]
		}
		krulestest.ResetDefault(t) // SLUB's and bad_page's taint turn lock debugging off
		rec := krulestest.Record(t)
		z, err := gfp.NewZone(16<<20, gfp.WithoutKswapd(), gfp.WithShards(2), gfp.WithName("Fuzz"))
		require.NoError(t, err)
		m := &kmallocModel{}
		checked := 0 // reports compared already
		// free is kfree of live object i, whose marks must be intact; kfree takes
		// a pointer, so a slice of the object's first n bytes (n > 0)
		// frees it as the whole one does.
		free := func(i, n int) {
			o := m.live[i]
			require.Equal(t, o.mark, o.b[0], "the object's first byte")
			require.Equal(t, o.mark, o.b[len(o.b)-1], "the object's last byte")
			z.Free(o.b[:n])
			m.live = slices.Delete(m.live, i, i+1)
			if o.large {
				m.largePages -= 1 << largeOrder(len(o.b))
			} else {
				m.kfrees++
			}
		}
		// doubleFree is the bad kfree of an object just freed: SLUB's
		// on_freelist finds it ("Object already free"); a large block's
		// pages are free, so bad_page reports them.
		doubleFree := func(o kmallocObj) {
			z.Free(o.b)
			if o.large {
				m.report(krules.BadPage, `kfree\(\) of memory kmalloc did not return`)
			} else {
				m.report(krules.SlabError, `^BUG `+kmallocCacheName(kmallocClass(len(o.b)))+` \(.*\): Object already free$`)
			}
		}

		for step := 0; step < len(script); step++ {
			b := script[step]
			op, arg := b&7, int(b>>3)
			switch op {
			case 0:
				if step+1 >= len(script) {
					break
				}
				step++
				size := fuzzSize(script[step])
				large := size > gfp.KmallocMaxCacheSize
				if large && m.largePages+1<<largeOrder(size) > 2048 {
					break // keep well above the watermarks
				}
				flags := gfp.Kernel
				if arg&1 != 0 {
					flags |= gfp.Zero
				}
				p, err := z.Alloc(size, flags)
				require.NoError(t, err, "step %d: kmalloc(%d)", step, size)
				require.Len(t, p, size, "step %d", step)
				require.Equal(t, size, cap(p), "step %d: no access beyond the request", step)
				align := uintptr(gfp.PageSize)
				if !large {
					align = uintptr(kmallocClass(size) & -kmallocClass(size)) // 96 and 192: 32 and 64
				}
				require.Zero(t, addr(p)%align, "step %d: kmalloc(%d) aligned to %d", step, size, align)
				for _, o := range m.live {
					require.False(t, addr(p) < addr(o.b)+uintptr(len(o.b)) && addr(o.b) < addr(p)+uintptr(size),
						"step %d: kmalloc(%d) overlaps a live object", step, size)
				}
				if flags&gfp.Zero != 0 {
					require.Zero(t, p[0], "step %d: __GFP_ZERO", step)
					require.Zero(t, p[size-1], "step %d: __GFP_ZERO", step)
					require.Zero(t, p[size/2], "step %d: __GFP_ZERO", step)
				}
				m.marks++
				p[0], p[size-1] = m.marks, m.marks
				m.live = append(m.live, kmallocObj{p, large, m.marks})
				if large {
					m.largePages += 1 << largeOrder(size)
				} else {
					m.kmallocs++
				}
			case 1:
				if len(m.live) > 0 {
					i := arg % len(m.live)
					n := len(m.live[i].b)
					if arg&16 != 0 {
						n = 1 + arg%n
					}
					free(i, n)
				}
			case 2:
				if len(m.live) > 0 {
					i := arg % len(m.live)
					o := m.live[i]
					free(i, len(o.b))
					doubleFree(o)
				}
			case 3:
				if len(m.live) == 0 {
					break
				}
				o := m.live[arg%len(m.live)]
				if len(o.b) < 2 {
					break
				}
				// A pointer into the object, never at its start: SLUB's
				// check_valid_pointer, or, for a large block, the page
				// checks of free_large_kmalloc.
				k := 1 + (arg*997)%(len(o.b)-1)
				z.Free(o.b[k:])
				if o.large {
					m.report(krules.BadPage, `kfree\(\) of memory kmalloc did not return`)
				} else {
					m.report(krules.SlabError, `^BUG `+kmallocCacheName(kmallocClass(len(o.b)))+` \(.*\): Invalid object pointer 0x[0-9a-f]+$`)
				}
			case 4:
				z.Free(make([]byte, 1+arg)) // virt_to_cache: not a slab page
				m.report(krules.SlabError, `^WARNING: `)
			case 5:
				// Several pages of the page allocator: not a folio
				// kfree can free (a single page is freed, with a
				// WARN_ON_ONCE: TestKfreeOfAnOrder0PageWarnsOnceAndFreesIt).
				order := 1 + arg%2
				p, err := z.AllocPages(order, gfp.Kernel)
				require.NoError(t, err, "step %d", step)
				z.Free(p.Bytes())
				m.report(krules.BadPage, `kfree\(\) of memory kmalloc did not return`)
				z.FreePages(p, order)
			case 6:
				if arg&1 == 0 {
					p, err := z.Alloc(0, gfp.Kernel) // ZERO_SIZE_PTR
					require.NoError(t, err, "step %d", step)
					require.NotNil(t, p, "step %d", step)
					require.Zero(t, cap(p), "step %d", step)
					z.Free(p)
				} else if len(m.live) > 0 {
					o := m.live[arg%len(m.live)]
					z.Free(o.b[:0]) // names no object
					z.Free(o.b[len(o.b):])
				}
			case 7:
				z.DrainPages()
			}

			st := z.Stats()
			require.Equal(t, m.kmallocs, st.Kmallocs, "step %d: Kmallocs", step)
			require.Equal(t, m.kfrees, st.Kfrees, "step %d: Kfrees", step)
			require.Equal(t, st.Managed, st.Free+st.PCP+st.SlabPages+m.largePages,
				"step %d: every page free, cached, in a slab or held by kmalloc_large", step)
			var bytes int64
			for _, o := range m.live {
				if !o.large {
					bytes += int64(kmallocClass(len(o.b)))
				}
			}
			require.LessOrEqual(t, bytes, st.SlabPages*gfp.PageSize, "step %d: live objects fit in the slabs", step)
			got := rec.Reports()
			require.Len(t, got, len(m.reports), "step %d: reports", step)
			for i := checked; i < len(got); i++ {
				want, r := m.reports[i], got[i]
				require.Equal(t, want.kind, r.Kind, "step %d: report %d", step, i)
				text := r.Headline
				if want.kind == krules.BadPage {
					text = r.Text
				}
				require.Regexp(t, want.re, text, "step %d: report %d", step, i)
			}
			checked = len(got)
		}

		for len(m.live) > 0 {
			free(len(m.live)-1, len(m.live[len(m.live)-1].b))
		}
		st := z.Stats()
		require.Equal(t, st.Kmallocs, st.Kfrees, "every object came back")
		require.NoError(t, z.Close(), "every page came back")
	})
}
