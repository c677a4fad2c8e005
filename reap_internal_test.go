package krules

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/krules/krules/internal/lineage"
	"github.com/krules/krules/internal/task"
)

// Parallel tests end while other tests' goroutines are taking and dropping
// records: reaping must never take the record of a live goroutine, however
// recently it was created, nor race with its owner.
func TestReapLeavesLiveGoroutinesRecordsAlone(t *testing.T) {
	var stop atomic.Bool
	var lost atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				var inner sync.WaitGroup
				inner.Add(1)
				go func() { // a fresh goroutine each time: it may post-date a reaper's snapshot
					defer inner.Done()
					tk := task.Current()
					tk.NonBlock = 1
					tk.Publish()
					for range 50 {
						if task.Lookup() != tk || tk.NonBlock != 1 {
							lost.Add(1)
						}
					}
					tk.NonBlock = 0
					tk.ReleaseIfEmpty()
				}()
				inner.Wait()
			}
		}()
	}
	for range 200 {
		ReapExited()
	}
	stop.Store(true)
	wg.Wait()
	require.Zero(t, lost.Load(), "a live goroutine's record was reaped")
	require.Zero(t, task.Len())
}

// A report about a goroutine that has returned is attributed through the
// lineage it carries, when the runtime no longer knows its parents.
func TestClaimsFollowTheLineageAReportCarries(t *testing.T) {
	mine := claimBesideAnother(t)
	const returned = 1 << 40 // no such goroutine
	r := &Report{Goroutine: Goroutine{ID: returned}}
	require.Len(t, claimsFor(r), 2, "unknown lineage: every open claim")
	r.Lineage = []int64{returned + 1, task.ID()}
	require.Equal(t, []*Claim{mine}, claimsFor(r))
}

// When the lineage a report carries names no claiming goroutine, the walk
// goes on from its last ancestor, not from the reporter: a report about a
// returned goroutine whose carried parent is alive is attributed through
// that parent's live ancestry to the claim of the test that started it.
func TestClaimsWalkOnFromTheLastAncestorTheReportCarries(t *testing.T) {
	mine := claimBesideAnother(t)
	parent := make(chan int64)
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // alive, not claiming, started by the claiming goroutine
		defer wg.Done()
		parent <- task.ID()
		<-release
	}()
	defer wg.Wait()
	defer close(release)
	const returned = 1 << 40 // no such goroutine: the runtime cannot tell its parent
	r := &Report{Goroutine: Goroutine{ID: returned}, Lineage: []int64{<-parent}}
	require.Equal(t, []*Claim{mine}, claimsFor(r))
}

// The parents learnt on a walk are cached while claims are open: once a
// middle goroutine has returned, a later report about its child still
// reaches the claim of the goroutine that started the middle one, although
// no dump of the live goroutines names that edge any more.
func TestClaimsRememberTheParentsOfGoroutinesThatReturned(t *testing.T) {
	mine := claimBesideAnother(t)
	ids := make(chan int64, 2)
	middleGo := make(chan struct{})
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the middle goroutine: starts the reporter, then returns when told
		ids <- task.ID()
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids <- task.ID()
			<-release
		}()
		<-middleGo
		wg.Done()
	}()
	defer wg.Wait()
	defer close(release)
	middle, child := <-ids, <-ids
	r := &Report{Goroutine: Goroutine{ID: child}}
	require.Equal(t, []*Claim{mine}, claimsFor(r), "walked while the middle goroutine lives")
	close(middleGo)
	require.Eventually(t, func() bool {
		_, alive := lineage.Live()[middle]
		return !alive
	}, 5*time.Second, time.Millisecond)
	require.Equal(t, []*Claim{mine}, claimsFor(r), "walked again after it returned")
}

// A goroutine that returns inside a non-block or atomic section, or named,
// leaves a record behind; ReapExited reclaims it, with do_exit's note for
// the sections.
func TestReapReclaimsGoroutinesThatReturnedInASectionOrNamed(t *testing.T) {
	out := unclaimed(t)
	ids := make(chan int64, 4)
	var wg sync.WaitGroup
	for _, enter := range []func(tk *task.Task){
		func(tk *task.Task) { tk.NonBlock = 1 },         // returned inside nonblock.Start
		func(tk *task.Task) { tk.Preempt = 2 },          // inside two atomic sections
		func(tk *task.Task) { tk.Preempt = 1 },          // inside one
		func(tk *task.Task) { SetName("kworker/u8:3") }, // named, never cleared
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := task.Current()
			enter(tk)
			tk.Publish() // as nonblock's sections do, for -race: a sweep may read it
			ids <- task.ID()
		}()
	}
	wg.Wait()
	close(ids)
	var gone []int64
	for id := range ids {
		gone = append(gone, id)
	}
	require.Eventually(t, func() bool {
		live := lineage.Live()
		for _, id := range gone {
			if _, ok := live[id]; ok {
				return false
			}
		}
		return true
	}, 5*time.Second, time.Millisecond)
	// A sweep the table asked for (SetName starts it) may reap them first,
	// on its own goroutine; ReapExited waits for one under way.
	ReapExited()
	for _, id := range gone {
		require.Nil(t, task.LookupID(id), "goroutine %d's record is reclaimed", id)
	}
	require.Regexp(t, `note: \S+\[\d+\] exited with non_block_count 1\n`, out.String())
	require.Regexp(t, `note: \S+\[\d+\] exited with preempt_count 2\n`, out.String())
	require.Regexp(t, `note: \S+\[\d+\] exited with preempt_count 1\n`, out.String())
	require.NotContains(t, out.String(), "kworker/u8:3", "a named goroutine is reclaimed silently")
}

// Two collectors at once attribute each report by lineage: the collector's
// own goroutine or a child of it needs no dump of every goroutine, and a
// grandchild's parents are learnt once and cached.
func TestParallelCollectorsAttributeByLineage(t *testing.T) {
	unclaimed(t)
	var wg sync.WaitGroup
	got := make([][]*Report, 2)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = Collect(func() {
				Emit(Warn(MempoolMisuse, "own", 0))
				var inner sync.WaitGroup
				inner.Add(1)
				go func() {
					defer inner.Done()
					Emit(Warn(MempoolMisuse, "child", 0))
					inner.Add(1)
					go func() {
						defer inner.Done()
						Emit(Warn(MempoolMisuse, "grandchild", 0))
					}()
				}()
				inner.Wait()
			})
		}()
	}
	wg.Wait()
	for i := range got {
		require.Len(t, got[i], 3, "collector %d gets its own three reports", i)
	}
}

// BenchmarkEmitUnderTwoCollectors emits from a child of each collector:
// two collectors must not make a report dearer than one does (runtime.Stack
// of every goroutine on each report did).
func BenchmarkEmitUnderTwoCollectors(b *testing.B) {
	unclaimed(b)
	for _, n := range []int{1, 2} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			var wg sync.WaitGroup
			start := make(chan struct{})
			per := b.N / n
			b.ResetTimer()
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					Collect(func() {
						done := make(chan struct{})
						go func() {
							defer close(done)
							<-start
							r := &Report{Kind: MempoolMisuse, Goroutine: Goroutine{ID: task.ID()}}
							for range per {
								Emit(r)
							}
						}()
						<-done
					})
				}()
			}
			close(start)
			wg.Wait()
		})
	}
}

// Outside tests nobody calls ReapExited: goroutines that return inside a
// section or named must not grow the task table without bound. The table
// asks for a sweep once it has grown past its threshold, and the next
// section entry or SetName runs it.
func TestGoroutinesReturningInSectionsOrNamedDoNotLeakRecords(t *testing.T) {
	out := unclaimed(t)
	const n = 2 * sweepTestFloor
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if i%2 == 0 {
				SetName("leaky")
			} else {
				tk := task.Current() // what nonblock.Start does, without importing it
				tk.NonBlock = 1
				tk.Publish()
			}
		}()
	}
	wg.Wait()
	// The last sweep may still run; wait for what it leaves.
	require.Eventually(t, func() bool {
		SetName("poke") // a record-creating path, which starts a due sweep
		SetName("")
		return task.Len() < 2*sweepTestFloor
	}, 10*time.Second, 10*time.Millisecond, "records: %d", task.Len())
	require.Contains(t, out.String(), "exited with non_block_count 1")
	ReapExited()
}

// sweepTestFloor is task's sweep threshold, in records.
const sweepTestFloor = 2 * 2 << 12

// claimBesideAnother opens the test goroutine's claim beside another
// goroutine's (foreignClaim), so that attribution has to choose; it is
// closed when the test ends.
func claimBesideAnother(t *testing.T) *Claim {
	mine := OpenClaim(nil)
	t.Cleanup(mine.Close)
	foreignClaim(t)
	return mine
}

// foreignClaim opens a claim of a goroutine that does not exist, closed
// when the test ends.
func foreignClaim(t *testing.T) *Claim {
	other := &Claim{goid: -7}
	claims.mu.Lock()
	claims.open = append(claims.open, other)
	claims.mu.Unlock()
	t.Cleanup(other.Close)
	return other
}

// ReapExited counts the records it reclaimed, not the records it looked
// at: the caller's own, live, is neither reclaimed nor counted.
func TestReapExitedCountsOnlyTheRecordsItReclaims(t *testing.T) {
	SetName("reaper")
	defer SetName("")
	ReapExited() // earlier tests' goroutines that have returned since
	require.Zero(t, ReapExited())
	require.NotNil(t, task.Lookup(), "the caller's record stays")
}
