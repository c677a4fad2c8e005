package task

import (
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestIDMatchesRuntimeStack(t *testing.T) {
	require.Equal(t, StackID(), ID())
	var wg sync.WaitGroup
	ids := make([]int64, 50)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			require.Equal(t, StackID(), ID())
			ids[i] = ID()
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for _, id := range ids {
		require.False(t, seen[id], "two goroutines share id %d", id)
		seen[id] = true
	}
}

func TestRecordExistsOnlyWhileNonEmpty(t *testing.T) {
	require.Nil(t, Lookup(), "a goroutine starts without a record")
	tk := Current()
	require.Same(t, tk, Current(), "Current returns the same record")
	require.Equal(t, ID(), tk.ID)
	tk.NonBlock = 1
	tk.ReleaseIfEmpty()
	require.Same(t, tk, Lookup(), "a non-empty record stays")
	tk.NonBlock = 0
	tk.ReleaseIfEmpty()
	require.Nil(t, Lookup(), "an empty record goes away")
	require.Zero(t, Len())
}

func TestAbsentLookupAllocatesNothing(t *testing.T) {
	require.Zero(t, testing.AllocsPerRun(1000, func() { _ = Lookup() }))
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		tk := Current()
		tk.Preempt++
		tk.Preempt--
		tk.ReleaseIfEmpty()
	}), "a goroutine that re-enters reuses its slot")
}

// Goroutine churn must not grow the table: 100k goroutines each take a record
// and drop it; afterwards no record is live and each bucket keeps at most a
// couple of idle nodes.
func TestChurnLeavesNothing(t *testing.T) {
	const n = 100_000
	var wg sync.WaitGroup
	sem := make(chan struct{}, 512)
	for range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tk := Current()
			tk.NonBlock++
			tk.Preempt++
			tk.Preempt--
			tk.NonBlock--
			tk.ReleaseIfEmpty()
		}()
	}
	wg.Wait()
	require.Zero(t, Len())
	require.LessOrEqual(t, nodeCount(), (idlePerBucket+1)<<bucketBits)
}

// Many goroutines hold records at once, in the same buckets, while another
// goroutine walks the table and trims it: every owner always finds its own
// record and never another's. (The walker may see a record just as its
// owner frees it; that is why Each's callers only read records of stopped
// goroutines.)
func TestConcurrentOwnersAndWalker(t *testing.T) {
	const workers, rounds = 64, 2000
	var wg sync.WaitGroup
	var stop atomic.Bool
	var walks atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			Each(func(*Task) bool { return true })
			bucketFor(ID()).trim()
			walks.Add(1)
		}
	}()
	var owners sync.WaitGroup
	for range workers {
		owners.Add(1)
		go func() {
			defer owners.Done()
			for range rounds {
				tk := Current()
				require.Equal(t, ID(), tk.ID)
				tk.Memalloc = 1
				require.Same(t, tk, Lookup())
				tk.Memalloc = 0
				tk.ReleaseIfEmpty()
				require.Nil(t, Lookup())
			}
		}()
	}
	owners.Wait()
	stop.Store(true)
	wg.Wait()
	require.Positive(t, walks.Load())
	require.Zero(t, Len())
}

func TestSlowPathKeepsIdsCorrect(t *testing.T) {
	restore := ForceSlowPath("test mismatch")
	slow, why := SlowPath()
	require.True(t, slow)
	require.Equal(t, "test mismatch", why)
	require.Equal(t, StackID(), ID())
	tk := Current()
	tk.NonBlock = 1
	require.Same(t, tk, Lookup())
	tk.NonBlock = 0
	tk.ReleaseIfEmpty()
	restore()
	slow, _ = SlowPath()
	require.False(t, slow)
}

func TestReapFreesADeadGoroutinesRecord(t *testing.T) {
	done := make(chan *Task)
	go func() {
		tk := Current()
		tk.Lockdep.Held = append(tk.Lockdep.Held, HeldLock{Site: 1})
		done <- tk
	}()
	tk := <-done
	require.Equal(t, 1, Len())
	Reap(tk)
	require.Zero(t, Len())
}

func TestOpenRegionsKeepTheRecordAndReapDropsThem(t *testing.T) {
	tk := Current()
	require.Equal(t, ID(), tk.Owner())
	tk.Regions = append(tk.Regions, SectionRegion{Depth: 1})
	tk.ReleaseIfEmpty()
	require.Same(t, tk, Lookup(), "a record with an open region stays")
	tk.Regions = tk.Regions[:0]
	tk.ReleaseIfEmpty()
	require.Nil(t, Lookup())
	require.Zero(t, tk.Owner(), "a free slot has no owner")

	done := make(chan *Task)
	go func() {
		tk := Current()
		tk.NonBlock = 1
		tk.Regions = append(tk.Regions, SectionRegion{Depth: 1})
		done <- tk
	}()
	tk = <-done
	Reap(tk)
	require.Zero(t, Len())
	require.Empty(t, tk.Regions)
}

//go:noinline
func siteOfCaller() (int64, uintptr) { return SiteID() }

func TestSiteIDGivesTheIDAndTheCallersReturnAddress(t *testing.T) {
	id, pc := siteOfCaller()
	if id != 0 {
		require.Equal(t, ID(), id, "SiteID reads g.goid in place")
		require.Equal(t, ID(), GoID())
	} else {
		require.Zero(t, GoID(), "both read in place or neither")
	}
	fn := runtime.FuncForPC(pc - 1)
	require.NotNil(t, fn)
	require.Equal(t, "github.com/krules/krules/internal/task."+t.Name(), fn.Name(), "pc is in siteOfCaller's caller")

	done := make(chan [2]int64)
	go func() { id, _ := siteOfCaller(); done <- [2]int64{id, ID()} }()
	got := <-done
	if got[0] != 0 {
		require.Equal(t, got[1], got[0])
	}
}

// The owner's take and the trimmer's retirement form a Dekker pair. Owners
// (synthetic ids, all in one bucket) take and drop their records while
// others keep joining the bucket and a trimmer keeps retiring idle nodes:
// an owner must never hold a record that is no longer in the table, and the
// table must end up bounded.
func TestRetiringNeverTakesARecordInUse(t *testing.T) {
	const owners, rounds = 4, 20000
	base := int64(1) << 40 // far above real goroutine ids, bucket 0
	b := bucketFor(base)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // newcomers push nodes, so trims have work
		defer wg.Done()
		for k := int64(owners); !stop.Load(); k++ {
			id := base + k<<bucketBits
			tk := Claim(id)
			tk.Memalloc = 1
			tk.Memalloc = 0
			tk.ReleaseIfEmpty()
		}
	}()
	go func() {
		defer wg.Done()
		for !stop.Load() {
			b.trim()
		}
	}()
	var lost atomic.Int64
	var owning sync.WaitGroup
	for k := range int64(owners) {
		owning.Add(1)
		go func() {
			defer owning.Done()
			id := base + k<<bucketBits
			for i := range rounds {
				var tk *Task
				if i%2 == 0 {
					tk = ClaimHead(id)
				}
				if tk == nil {
					tk = Claim(id)
				}
				tk.NonBlock = 1
				runtime.Gosched()
				if lookup(id) != tk {
					lost.Add(1)
				}
				tk.NonBlock = 0
				tk.ReleaseIfEmpty()
			}
		}()
	}
	owning.Wait()
	stop.Store(true)
	wg.Wait()
	// Idle nodes beyond the bucket's share are retired by the next trim
	// (a push's, or here the test's): the trimmer's last one may have run
	// while owners still held their records.
	b.trim()
	require.Zero(t, lost.Load(), "an owner's record was retired under it")
	require.LessOrEqual(t, int(b.nodes.Load()), idlePerBucket+1)
	for k := range int64(owners) {
		require.Nil(t, lookup(base+k<<bucketBits))
	}
}

func TestReclaimTakesOnlyTheCallersLinkedNode(t *testing.T) {
	id := int64(1)<<41 + 7
	tk := Claim(id)
	tk.ReleaseIfEmpty()
	require.Nil(t, Reclaim(nil, id), "no guess")
	require.Nil(t, Reclaim(tk, id+1), "another goroutine's node")
	require.Nil(t, lookup(id), "a failed guess leaves the node idle")
	require.Same(t, tk, Reclaim(tk, id))
	require.Same(t, tk, lookup(id))
	tk.ReleaseIfEmpty()
	tk.retiring.Store(1) // as a trim leaves a retired node
	require.Nil(t, Reclaim(tk, id))
	require.Nil(t, ClaimHead(id))
	tk.retiring.Store(0)
	require.Same(t, tk, ClaimHead(id))
	tk.ReleaseIfEmpty()
}

// Peek and PeekHead find the caller's node whether its record exists or
// not, and an idle node carries no state; PeekHead and ClaimHead look at the
// head only, and id 0 (GoID's "unknown") matches no node.
func TestPeekFindsTheCallersNodeBusyOrIdle(t *testing.T) {
	id := int64(1)<<42 + 9 // synthetic, far above real goroutine ids
	require.Nil(t, Peek(id))
	require.Nil(t, PeekHead(id))
	tk := Claim(id)
	tk.NonBlock = 1
	require.Same(t, tk, Peek(id))
	require.Same(t, tk, PeekHead(id))
	tk.NonBlock = 0
	tk.ReleaseIfEmpty()
	require.Nil(t, lookup(id), "the record is gone")
	require.Same(t, tk, Peek(id), "its idle node is still found")
	require.Zero(t, tk.Sections.used()|tk.Lockdep.used()|tk.Scope.used())

	other := Claim(id + 1<<bucketBits) // same bucket, pushed at its head
	require.Nil(t, PeekHead(id))
	require.Nil(t, ClaimHead(id))
	require.Same(t, tk, Peek(id), "Peek walks past the head")
	require.Same(t, other, PeekHead(id+1<<bucketBits))
	other.ReleaseIfEmpty()

	require.Nil(t, PeekHead(0))
	require.Nil(t, ClaimHead(0))
}

// chainEnd, which ends every chain, is nobody's node: the ids that name no
// goroutine (GoID's "unknown" 0, StackID's failure -1) find nothing, a walk
// past the last node of a bucket finds nothing, no walk yields it, and no
// claim writes it.
func TestChainEndIsNobodysNode(t *testing.T) {
	for _, id := range []int64{0, -1} {
		require.Nil(t, PeekHead(id))
		require.Nil(t, ClaimHead(id))
		require.Nil(t, LookupHead(id))
		require.Nil(t, lookup(id))
	}
	id := int64(1)<<42 + 11 // synthetic, far above real goroutine ids
	tk := Claim(id)
	tk.NonBlock = 1
	require.Nil(t, Peek(id+1<<bucketBits), "a walk past the bucket's last node")
	require.Nil(t, lookup(id+1<<bucketBits))
	Each(func(x *Task) bool {
		require.NotSame(t, chainEnd, x)
		return true
	})
	tk.NonBlock = 0
	tk.ReleaseIfEmpty()
	require.Zero(t, chainEnd.busy.Load())
	require.Equal(t, int64(noOwner), chainEnd.owner.Load())
	require.Same(t, chainEnd, chainEnd.next.Load())
}

// A held lock carries its own label: reports print what the validator set
// at acquisition, with no package-level hook.
func TestHeldLockCarriesItsLabel(t *testing.T) {
	name := "(&dev->lock){+.+.}-{3:3}"
	h := HeldLock{Class: unsafe.Pointer(&name), Label: func(c unsafe.Pointer) string { return *(*string)(c) }}
	require.Equal(t, name, LabelOf(&h))
	var b strings.Builder
	FormatHeldLock(&b, &h)
	require.Contains(t, b.String(), " "+name+", at: ")
	require.Equal(t, "(?)", LabelOf(&HeldLock{Class: unsafe.Pointer(&name)}))
}

var sinkTasks []*Task

// Records start on a cache line of their own: the owner writes its record
// on every lock and unlock, and two records sharing a line would bounce it
// between two CPUs.
func TestRecordsDoNotShareCacheLines(t *testing.T) {
	for range 8 {
		p := &(new(paddedTask).Task)
		sinkTasks = append(sinkTasks, p)
		require.Zero(t, uintptr(unsafe.Pointer(p))%cacheLine)
		require.Zero(t, unsafe.Sizeof(paddedTask{})%cacheLine)
	}
	sinkTasks = nil
}

// The trimmer's side of the Dekker pair, in the order the race leaves it:
// a node marked for retirement whose owner took it back before the
// trimmer's barrier (its busy store seen after it) stays linked and
// unmarked, and its owner keeps finding it, while the idle nodes beyond
// the bucket's share are retired.
func TestTrimLeavesANodeItsOwnerTookBack(t *testing.T) {
	base := int64(3)<<40 | 0x5a5 // far above real goroutine ids
	b := bucketFor(base)
	owner := Claim(base)
	owner.NonBlock = 1
	// Busy while they join (a push trims only idle nodes), idle after:
	// one more than the share, so the trim below has one to retire.
	var others []*Task
	for k := int64(1); k <= idlePerBucket+1; k++ {
		others = append(others, Claim(base+k<<bucketBits))
	}
	for _, tk := range others {
		tk.ReleaseIfEmpty()
	}
	owner.retiring.Store(1) // marked by a trim whose barrier has not run yet
	b.trim()
	require.Same(t, owner, lookup(base), "the owner's node was retired under it")
	require.Zero(t, owner.retiring.Load())
	retired := 0
	for _, tk := range others {
		retired += int(tk.retiring.Load()) // a retired node stays marked
	}
	require.Positive(t, retired, "the idle node beyond the share was retired")
	owner.NonBlock = 0
	owner.ReleaseIfEmpty()
	require.Nil(t, lookup(base))
}

// Each part of the record keeps it alive, as each piece of per-task state
// lives in the kernel's task_struct for as long as it is set: a section
// (non-block, atomic, RCU, a trace region), a memalloc scope, a name, a
// held lock, lockdep_off. Cleared, the record goes away.
func TestEveryPartKeepsTheRecord(t *testing.T) {
	for name, part := range map[string]func(tk *Task, on bool){
		"non-block": func(tk *Task, on bool) { tk.NonBlock = b2i(on) },
		"preempt":   func(tk *Task, on bool) { tk.Preempt = b2i(on) },
		"rcu":       func(tk *Task, on bool) { tk.RCUNest = b2i(on) },
		"region": func(tk *Task, on bool) {
			tk.Regions = tk.Regions[:0]
			if on {
				tk.Regions = append(tk.Regions, SectionRegion{Depth: 1})
			}
		},
		"memalloc": func(tk *Task, on bool) { tk.Memalloc = uint32(b2i(on)) },
		"name": func(tk *Task, on bool) {
			tk.Name = ""
			if on {
				tk.Name = "kworker/0:1"
			}
		},
		"held lock": func(tk *Task, on bool) {
			tk.Lockdep.Held = tk.Lockdep.Held[:0]
			if on {
				tk.Lockdep.Held = append(tk.Lockdep.Held, HeldLock{Site: 1})
			}
		},
		"lockdep off": func(tk *Task, on bool) { tk.Lockdep.Off = b2i(on) },
	} {
		tk := Current()
		part(tk, true)
		tk.ReleaseIfEmpty()
		require.Same(t, tk, Lookup(), "%s keeps the record", name)
		part(tk, false)
		tk.ReleaseIfEmpty()
		require.Nil(t, Lookup(), "%s cleared, the record goes", name)
	}
}

func b2i(on bool) int32 {
	if on {
		return 1
	}
	return 0
}

// A record dropped empty starts again from the empty held-lock stack's
// chain key, whatever was left in it.
func TestReleaseResetsTheChainKey(t *testing.T) {
	tk := Current()
	tk.Lockdep.ChainKey = 42
	tk.ReleaseIfEmpty()
	require.Zero(t, Current().Lockdep.ChainKey)
	Current().ReleaseIfEmpty()
}

// Reaping a goroutine that returned leaves nothing of it: no name, no
// section or its site, no scope, no lockdep state, and no live record.
func TestReapClearsEveryPart(t *testing.T) {
	done := make(chan *Task)
	go func() {
		tk := Current()
		tk.Name = "kworker/u8:3"
		tk.Preempt, tk.PreemptSite, tk.RCUNest = 1, 0x1234, 1
		tk.Memalloc = 1
		tk.Lockdep.Held = append(tk.Lockdep.Held, HeldLock{Site: 1})
		tk.Lockdep.Off, tk.Lockdep.ChainKey = 1, 42
		done <- tk
	}()
	tk := <-done
	Reap(tk)
	require.Zero(t, tk.Owner(), "no live record")
	require.Empty(t, tk.Name)
	require.Zero(t, tk.Preempt)
	require.Zero(t, tk.PreemptSite)
	require.Zero(t, tk.RCUNest)
	require.Zero(t, tk.Memalloc)
	require.Empty(t, tk.Lockdep.Held)
	require.Zero(t, tk.Lockdep.Off)
	require.Zero(t, tk.Lockdep.ChainKey)
	require.Zero(t, Len())
}

// Each stops at the first record its function refuses, as a sweep that
// found what it wanted does.
func TestEachStopsWhenAsked(t *testing.T) {
	release := make(chan struct{})
	var ready sync.WaitGroup
	var wg sync.WaitGroup
	for range 3 {
		ready.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := Current()
			tk.NonBlock = 1
			ready.Done()
			<-release
			tk.NonBlock = 0
			tk.ReleaseIfEmpty()
		}()
	}
	ready.Wait()
	seen := 0
	Each(func(*Task) bool { seen++; return false })
	require.Equal(t, 1, seen)
	require.Equal(t, 3, Len())
	close(release)
	wg.Wait()
}

// The table asks for a sweep once its nodes reach the threshold, hands it
// to one taker, and after Swept asks again when it grows back to the
// threshold: a sweep left marked as running would stop all later ones and
// let records of returned goroutines pile up.
func TestSweepIsAskedForAgainAfterEachSweep(t *testing.T) {
	at, due := sweep.at.Load(), sweep.due.Load()
	t.Cleanup(func() { sweep.at.Store(at); sweep.due.Store(due) })
	if TakeSweep() { // asked for by an earlier test's churn: nobody sweeps here
		Swept()
	}
	for round := range 2 {
		require.False(t, SweepDue(), "round %d", round)
		sweep.at.Store(sweep.nodes.Load() + 1)
		noteNodes(1) // reaches the threshold
		noteNodes(-1)
		require.True(t, SweepDue(), "round %d", round)
		require.True(t, TakeSweep())
		require.False(t, TakeSweep(), "one taker")
		require.False(t, SweepDue(), "taken")
		Swept()
	}
}

// A sweep that leaves more records than the table has buckets (4096), so
// several to a bucket, asks for the next one once the table has doubled
// from all of them, on top of the idle nodes the buckets keep: not from
// its nodes, which still include the records it reclaimed (idle, linked
// until new nodes trim them), nor from the floor alone. Either would let
// the records of a second wave of returned goroutines pile up.
func TestSweepAfterMoreRecordsThanBucketsCountsThemAll(t *testing.T) {
	keepSweepState(t)
	const live, reclaimed = 3 << bucketBits, idlePerBucket << bucketBits
	base := int64(1) << 42
	before := Len()
	tks := make([]*Task, 0, live+reclaimed)
	for k := range int64(live + reclaimed) {
		tks = append(tks, Claim(base+k))
	}
	t.Cleanup(func() {
		for _, tk := range tks[:live] {
			tk.ReleaseIfEmpty()
		}
		for i := range table {
			table[i].trim()
		}
	})
	for _, tk := range tks[live:] { // what the sweep reclaimed
		tk.ReleaseIfEmpty()
	}
	require.Equal(t, before+live, Len())
	if TakeSweep() {
		Swept()
	}
	Swept()
	next := 2*int64(before+live) + idlePerBucket<<bucketBits
	require.Greater(t, next, int64(sweepFloor))
	grow := next - sweep.nodes.Load()
	noteNodes(grow - 1)
	require.False(t, SweepDue(), "below twice the records left and the idle allowance")
	noteNodes(1)
	require.True(t, SweepDue(), "at it")
	noteNodes(-grow)
}

// keepSweepState puts the sweep's threshold and state back when the test
// ends, and settles a sweep an earlier test's churn asked for, which nobody
// runs here.
func keepSweepState(t *testing.T) {
	at, due := sweep.at.Load(), sweep.due.Load()
	t.Cleanup(func() { sweep.at.Store(at); sweep.due.Store(due) })
	if TakeSweep() {
		Swept()
	}
}

// While a sweep runs, growth past the threshold asks for no second one:
// the table asks again only once Swept has set the next threshold.
func TestNoSecondSweepIsAskedForWhileOneRuns(t *testing.T) {
	keepSweepState(t)
	sweep.at.Store(sweep.nodes.Load() + 1)
	noteNodes(1)
	noteNodes(-1)
	require.True(t, TakeSweep())
	noteNodes(1) // at the threshold again, the sweep still running
	noteNodes(-1)
	require.False(t, SweepDue())
	require.False(t, TakeSweep())
	Swept()
}

// startSweepAt is the sweep threshold the package starts with, before any
// test runs (this file's init runs after sweep.go's).
var startSweepAt int64

func init() { startSweepAt = sweep.at.Load() }

// A table that holds no more than the idle nodes its buckets keep on their
// own (two each), and as many again, asks for no sweep, from the start and
// however few records the last sweep left.
func TestNoSweepIsAskedForBelowTheFloor(t *testing.T) {
	require.GreaterOrEqual(t, startSweepAt, int64(sweepFloor), "before the first sweep")
	keepSweepState(t)
	Swept()
	require.Less(t, Len(), idlePerBucket<<bucketBits, "few records, so the floor decides")
	grow := 2*idlePerBucket<<bucketBits - 1 - sweep.nodes.Load()
	noteNodes(grow)
	require.False(t, SweepDue())
	noteNodes(-grow)
}
