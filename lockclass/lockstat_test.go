//go:build !krules_nolockdep

package lockclass_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/stretchr/testify/require"

	"github.com/krules/krules"
	"github.com/krules/krules/krulestest"
	"github.com/krules/krules/lockclass"
)

func lockStatOn(t *testing.T) {
	prev := lockclass.SetLockStat(true)
	t.Cleanup(func() { lockclass.SetLockStat(prev) })
}

// statMutex turns lock_stat on for the test and returns a new validator
// and a mutex of class name on it.
func statMutex(t *testing.T, name string) (*lockclass.Validator, *lockclass.Mutex) {
	lockStatOn(t)
	v := lockclass.NewValidator()
	m := new(lockclass.Mutex)
	m.Init(lockclass.WithValidator(v), lockclass.WithName(name))
	return v, m
}

func statOf(v *lockclass.Validator, class string) (rows []lockclass.LockStat) {
	for _, r := range v.LockStats() {
		if r.Class == class {
			rows = append(rows, r)
		}
	}
	return rows
}

func contentionPoints(v *lockclass.Validator, class string) int64 {
	var n int64
	for _, r := range statOf(v, class) {
		for _, p := range r.ContentionPoints {
			n += p.Count
		}
	}
	return n
}

// Three scripted handovers between two goroutines: each time the second
// one queues behind the first, which holds the lock for hold more, so every
// figure is known: 3 contentions, 6 acquisitions, every hold and wait at
// least hold long, one contention point (the waiter's Lock) and one
// contending point (the holder's).
func TestLockStatCountsAScriptedHandoverExactly(t *testing.T) {
	krulestest.Check(t)
	v, m := statMutex(t, "handover_lock")
	const hold = 20 * time.Millisecond
	const rounds = 3
	for r := range rounds {
		m.Lock() // the contending point
		done := make(chan struct{})
		go func() {
			defer close(done)
			m.Lock() // the contention point
			time.Sleep(hold)
			m.Unlock()
		}()
		require.Eventually(t, func() bool { return contentionPoints(v, "handover_lock") == int64(r+1) },
			10*time.Second, time.Millisecond, "the second goroutine queues")
		time.Sleep(hold)
		m.Unlock()
		<-done
	}
	rows := statOf(v, "handover_lock")
	require.Len(t, rows, 1, "a mutex has only the write side")
	s := rows[0]
	require.False(t, s.Read)
	require.EqualValues(t, rounds, s.Contentions)
	require.EqualValues(t, 2*rounds, s.Acquisitions)
	require.EqualValues(t, rounds, s.ConBounces, "each waiter found the other goroutine's acquisition last")
	require.EqualValues(t, 2*rounds-1, s.AcqBounces, "every acquisition but the first changed goroutine")
	require.GreaterOrEqual(t, s.HoldMin, hold.Nanoseconds())
	require.GreaterOrEqual(t, s.HoldTotal, 2*rounds*hold.Nanoseconds())
	require.GreaterOrEqual(t, s.HoldMax, s.HoldMin)
	require.GreaterOrEqual(t, s.WaitMin, hold.Nanoseconds(), "each waiter waited out a whole hold")
	require.GreaterOrEqual(t, s.WaitTotal, rounds*hold.Nanoseconds())
	require.Len(t, s.ContentionPoints, 1)
	require.EqualValues(t, rounds, s.ContentionPoints[0].Count)
	require.Len(t, s.ContendingPoints, 1)
	require.EqualValues(t, rounds, s.ContendingPoints[0].Count)
	require.NotEqual(t, s.ContentionPoints[0].PC, s.ContendingPoints[0].PC)

	var b strings.Builder
	require.NoError(t, v.WriteLockStat(&b))
	out := b.String()
	require.True(t, strings.HasPrefix(out, "lock_stat version 0.4\n"+strings.Repeat("-", 221)+"\n"), out)
	require.Contains(t, out, "                              class name    con-bounces    contentions   waittime-min")
	require.Regexp(t, `(?m)^ +handover_lock: +3 +3 +\d+\.\d\d +\d+\.\d\d +\d+\.\d\d +\d+\.\d\d +5 +6 +\d+\.\d\d`, out)
	require.Regexp(t, `(?m)^ +handover_lock +3 +\[<[0-9a-f]{16}>\] lockclass_test\.TestLockStatCountsAScriptedHandoverExactly\.func1\+0x[0-9a-f]+ lockclass/lockstat_test\.go:\d+$`, out)
	require.Regexp(t, `(?m)^ +handover_lock +3 +\[<[0-9a-f]{16}>\] lockclass_test\.TestLockStatCountsAScriptedHandoverExactly\+0x[0-9a-f]+ lockclass/lockstat_test\.go:\d+$`, out)
	require.Contains(t, out, "\n"+strings.Repeat(".", 221)+"\n")

	// The contention profile: the waiter's stack, 3 contentions, the waits.
	var pb bytes.Buffer
	require.NoError(t, v.WriteContentionProfile(&pb))
	prof, err := profile.Parse(&pb)
	require.NoError(t, err)
	require.Equal(t, "contentions", prof.SampleType[0].Type)
	require.Equal(t, "nanoseconds", prof.SampleType[1].Unit)
	require.EqualValues(t, 1, prof.Period, "every contention, not a sample of them")
	require.Len(t, prof.Sample, 1)
	require.EqualValues(t, rounds, prof.Sample[0].Value[0])
	for _, l := range prof.Sample[0].Location {
		require.NotZero(t, l.Address, "the stack ends at its last frame")
	}
	require.GreaterOrEqual(t, prof.Sample[0].Value[1], rounds*hold.Nanoseconds())
	var fns []string
	for _, l := range prof.Sample[0].Location {
		for _, ln := range l.Line {
			fns = append(fns, ln.Function.Name)
		}
	}
	require.Contains(t, fns, "github.com/krules/krules/lockclass_test.TestLockStatCountsAScriptedHandoverExactly.func1")

	// echo 0 > /proc/lock_stat, through the handler.
	srv := httptest.NewServer(lockclass.Handler(v))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/debug/lockdep/lock_stat", "text/plain", strings.NewReader("0\n"))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, statOf(v, "handover_lock"), "cleared")
	require.Empty(t, v.ContentionProfile().Sample, "cleared")
}

// A waiter's hold time starts when its wait ends (lock_acquired restamps
// the entry), and the minimum follows the shortest hold: the holder keeps
// the lock for hold, the waiter lets go at once, so the shortest hold is
// the waiter's, far below hold, and the longest is the holder's.
func TestLockStatHoldTimeStartsWhenTheWaitEnds(t *testing.T) {
	krulestest.Check(t)
	v, m := statMutex(t, "brief_waiter_lock")
	const hold = 50 * time.Millisecond
	m.Lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Lock()
		m.Unlock()
	}()
	require.Eventually(t, func() bool { return contentionPoints(v, "brief_waiter_lock") == 1 },
		10*time.Second, time.Millisecond, "the second goroutine queues")
	time.Sleep(hold)
	m.Unlock()
	<-done
	rows := statOf(v, "brief_waiter_lock")
	require.Len(t, rows, 1)
	s := rows[0]
	require.EqualValues(t, 2, s.Acquisitions)
	require.GreaterOrEqual(t, s.WaitMin, hold.Nanoseconds(), "the waiter waited out the hold")
	require.GreaterOrEqual(t, s.HoldMax, hold.Nanoseconds())
	require.Less(t, s.HoldMin, (hold / 2).Nanoseconds(), "the waiter's hold does not count its wait")
}

// The read and write sides of a rwsem are kept apart (-W and -R rows), and
// nothing is gathered while the switch is off.
func TestLockStatKeepsTheSidesApartAndOnlyCountsWhileOn(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(v), lockclass.WithName("sides_sem"))
	prev := lockclass.SetLockStat(false)
	defer lockclass.SetLockStat(prev)
	require.False(t, lockclass.LockStatEnabled())
	s.Lock()
	s.Unlock()
	require.Empty(t, statOf(v, "sides_sem"), "off: nothing counted")

	lockclass.SetLockStat(true)
	require.True(t, lockclass.LockStatEnabled())
	for range 2 {
		s.RLock()
		s.RUnlock()
	}
	s.Lock()
	time.Sleep(time.Millisecond)
	s.Unlock()
	rows := statOf(v, "sides_sem")
	require.Len(t, rows, 2)
	require.False(t, rows[0].Read)
	require.EqualValues(t, 1, rows[0].Acquisitions)
	require.GreaterOrEqual(t, rows[0].HoldMin, time.Millisecond.Nanoseconds())
	require.True(t, rows[1].Read)
	require.EqualValues(t, 2, rows[1].Acquisitions)
	require.Zero(t, rows[0].Contentions+rows[1].Contentions)

	var b strings.Builder
	require.NoError(t, v.WriteLockStat(&b))
	require.Regexp(t, `(?m)^ +sides_sem-W: +0 +0 `, b.String())
	require.Regexp(t, `(?m)^ +sides_sem-R: +0 +0 `, b.String())

	v.ClearLockStat()
	require.Empty(t, statOf(v, "sides_sem"))
}

// lock_stat counts an acquisition whichever tier pushed it: a
// WWAcquireCtx's map (ww_acquire_init) and the first ww_mutex entry of an
// attempt, once their chains are cached, are pushed by the cached tiers
// (pushCached for a new context's map, Init's quick tier for a context
// initialised again, lockCached's quick tier for the mutex), and each
// attempt is one acquisition of each class, as a plain mutex's is; the
// second mutex merges into the first's entry (nest_lock references), as the
// kernel merges it before lock_stat stamps anything.
func TestLockStatCountsTheNestLockQuickTiers(t *testing.T) {
	class, ms := wwWarm(t, 2) // the chains are cached: the quick tiers take the rounds below
	var again lockclass.WWAcquireCtx
	round := func() {
		lockBothIn(t, class, ms, false) // a new context
		again.Init(class)               // the same context every round
		require.NoError(t, ms[0].Lock(&again))
		require.NoError(t, ms[1].Lock(&again))
		ms[1].Unlock()
		ms[0].Unlock()
		again.Fini()
	}
	round()
	prev := lockclass.SetLockStat(true)
	defer lockclass.SetLockStat(prev)
	lockclass.Default().ClearLockStat()
	for range 3 {
		round()
	}
	for _, name := range []string{"ww_merge_acquire", "ww_merge_mutex"} {
		rows := statOf(lockclass.Default(), name)
		require.Len(t, rows, 1, name)
		require.EqualValues(t, 6, rows[0].Acquisitions, name)
	}
}

// lock_stat counts every acquisition (lock_acquired): the cached quick
// tiers of RWSem.RLock, Map.Acquire and Map.AcquireShared count theirs as
// the whole way does, each on its side.
func TestLockStatCountsTheQuickTiersOfReadersAndMaps(t *testing.T) {
	krulestest.Check(t)
	v := lockclass.NewValidator()
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(v), lockclass.WithName("quick_sem"))
	excl := lockclass.NewMap("exclusive_map", lockclass.WithValidator(v))
	shared := lockclass.NewMap("shared_map", lockclass.WithValidator(v))
	outer := mutex(v, "outer") // the maps' quick tiers want a task record
	round := func() {
		s.RLock()
		s.RUnlock()
		outer.Lock()
		excl.Acquire()
		excl.Release()
		shared.AcquireShared()
		shared.Release()
		outer.Unlock()
	}
	round() // the chains are cached: the quick tiers take the rounds below
	lockStatOn(t)
	v.ClearLockStat()
	const rounds = 3
	for range rounds {
		round()
	}
	sem := statOf(v, "quick_sem")
	require.Len(t, sem, 1)
	require.True(t, sem[0].Read)
	require.EqualValues(t, rounds, sem[0].Acquisitions)
	for _, m := range []struct {
		name string
		read bool
	}{{"exclusive_map", false}, {"shared_map", true}} {
		rows := statOf(v, m.name)
		require.Len(t, rows, 1, m.name)
		require.Equal(t, m.read, rows[0].Read, m.name)
		require.EqualValues(t, rounds, rows[0].Acquisitions, m.name)
	}
}

// lock_stat's header says when lock debugging is off
// (lock_stat_open's seq_header: "*WARNING* lock debugging disabled!!"),
// whose statistics may have stopped short.
func TestWriteLockStatWarnsOnceValidationIsOff(t *testing.T) {
	rec := krulestest.Record(t)
	v, m := statMutex(t, "&warned->lock")
	header := func() string {
		var b strings.Builder
		require.NoError(t, v.WriteLockStat(&b))
		return b.String()
	}
	const warning = "*WARNING* lock debugging disabled!! - possibly due to a lockdep warning\n"
	require.NotContains(t, header(), warning)
	m.Lock()
	lockclass.MightLock(m) // recursive: reported, validation off
	m.Unlock()
	require.Equal(t, []krules.Kind{krules.RecursiveLocking}, rec.Kinds())
	require.Regexp(t, `^lock_stat version 0\.4\n`+regexp.QuoteMeta(warning), header())
}

// With lock_stat on, a seqcount read is annotated every time, its cached
// quick tier included (which otherwise makes no acquisition at all), so
// every read is counted.
func TestLockStatCountsEverySeqcountRead(t *testing.T) {
	krulestest.Check(t)
	v, mu := statMutex(t, "&obj->lock")
	var sc lockclass.SeqCount
	sc.Init(mu, lockclass.WithValidator(v), lockclass.WithName("&obj->seq"))
	const reads = 4
	for range reads {
		seq := sc.ReadBegin()
		require.False(t, sc.ReadRetry(seq))
	}
	var acquired int64
	for _, r := range statOf(v, "&obj->seq") {
		acquired += r.Acquisitions
	}
	require.EqualValues(t, reads, acquired)
}

// Writing to /proc/lock_stat clears the statistics only when the first
// byte is '0' (lock_stat_write returns early for any other character).
func TestLockStatHandlerClearsOnlyOnZero(t *testing.T) {
	v, m := statMutex(t, "M")
	acquisitions := func() (n int64) {
		for _, r := range statOf(v, "M") {
			n += r.Acquisitions
		}
		return n
	}
	m.Lock()
	m.Unlock()
	require.EqualValues(t, 1, acquisitions())
	h := lockclass.Handler(v)
	send := func(method, body string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, "/debug/lockdep/lock_stat", strings.NewReader(body)))
		require.Equal(t, http.StatusOK, w.Code)
	}
	send(http.MethodPost, "1")
	require.EqualValues(t, 1, acquisitions(), "not cleared")
	send(http.MethodPost, "0")
	require.Zero(t, acquisitions())
	m.Lock()
	m.Unlock()
	send(http.MethodPut, "0")
	require.Zero(t, acquisitions(), "a PUT writes the file too")
}

// A lock released out of order (lock_release's slow path, which rebuilds
// the locks above it) still has its hold counted (lock_release_holdtime).
func TestLockStatCountsAnOutOfOrderRelease(t *testing.T) {
	v, a := statMutex(t, "A")
	b := new(lockclass.Mutex)
	b.Init(lockclass.WithValidator(v), lockclass.WithName("B"))
	a.Lock()
	b.Lock()
	a.Unlock() // not the top lock
	b.Unlock()
	var n int64
	for _, r := range statOf(v, "A") {
		n += r.Acquisitions
	}
	require.EqualValues(t, 1, n)
}

// seq_stats prints a side's row only once one of its holds has ended
// (holdtime.nr): a reader that waited for the writer and still holds the
// lock shows in the points, under the writer's row, which has no -W suffix
// since no read hold has ended, and the points' rule is as long as the
// name alone.
func TestWriteLockStatPrintsASideOnceAHoldOfItEnded(t *testing.T) {
	krulestest.Check(t)
	lockStatOn(t)
	v := lockclass.NewValidator()
	var s lockclass.RWSem
	s.Init(lockclass.WithValidator(v), lockclass.WithName("waited_sem"))
	s.Lock()
	held, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		s.RLock()
		close(held)
		<-release
		s.RUnlock()
	}()
	require.Eventually(t, func() bool { return contentionPoints(v, "waited_sem") == 1 },
		10*time.Second, time.Millisecond, "the reader queues")
	var during strings.Builder
	require.NoError(t, v.WriteLockStat(&during))
	require.NotContains(t, during.String(), "waited_sem", "no hold ended, no wait ended: nothing to show yet")
	s.Unlock()
	<-held
	rows := statOf(v, "waited_sem")
	var b strings.Builder
	require.NoError(t, v.WriteLockStat(&b))
	close(release)
	<-done
	// LockStats has the read side already: the reader's wait, its bounces
	// (it waited for, and took the lock after, another goroutine), and no
	// hold yet.
	require.Len(t, rows, 2)
	w, r := rows[0], rows[1]
	require.False(t, w.Read)
	require.Equal(t, [4]int64{1, 0, 0, 0}, [4]int64{w.Acquisitions, w.Contentions, w.ConBounces, w.AcqBounces},
		"the writer's hold, nothing waited, the first acquisition bounced from nowhere")
	require.True(t, r.Read)
	require.Equal(t, [4]int64{0, 1, 1, 1}, [4]int64{r.Acquisitions, r.Contentions, r.ConBounces, r.AcqBounces})
	out := b.String()
	require.Regexp(t, `(?m)^ {30}waited_sem: +0 +0 `, out, "the write side, alone")
	require.NotContains(t, out, "waited_sem-", "no read hold has ended")
	require.Regexp(t, `(?m)^ {30}-{10}\n +waited_sem +1 +\[<[0-9a-f]{16}>\] lockclass_test\.TestWriteLockStatPrintsASideOnceAHoldOfItEnded\.func1\+`, out)

	// The read hold has ended: -W and -R rows, and the points' rule as long
	// as the name with its suffix.
	b.Reset()
	require.NoError(t, v.WriteLockStat(&b))
	require.Regexp(t, `(?m)^ {28}waited_sem-W: +0 +0 .*\n {28}waited_sem-R: +1 +1 .*\n {28}-{12}\n`, b.String())
}

// seq_stats cuts a class name to leave room for "#version" and
// "/subclass" (its name buffer holds 38 characters): the subclass stays.
func TestWriteLockStatKeepsTheSubclassOfALongName(t *testing.T) {
	const long = "a_lock_class_name_longer_than_forty_characters"
	v, m := statMutex(t, long)
	m.LockNested(1)
	m.Unlock()
	var b strings.Builder
	require.NoError(t, v.WriteLockStat(&b))
	require.Regexp(t, `(?m)^   `+long[:35]+`/1: +0 +0 `, b.String())

	// Nine more classes of that name, each a key of its own: the second is
	// "#2", the tenth "#1" (the version keeps one digit).
	for range 9 {
		m := new(lockclass.Mutex)
		m.Init(lockclass.WithValidator(v), lockclass.WithKey(registeredKey()), lockclass.WithName(long))
		m.LockNested(1)
		m.Unlock()
	}
	b.Reset()
	require.NoError(t, v.WriteLockStat(&b))
	require.Regexp(t, `(?m)^   `+long[:33]+`#2/1: +0 +0 `, b.String())
	require.Regexp(t, `(?m)^   `+long[:33]+`#1/1: +0 +0 `, b.String())
}

// The dotted line closes the contending points (seq_stats tests the
// contending loop's count): a holder that took the lock while lock_stat was
// off left no site to name, so the waiter's contention point stands alone.
func TestWriteLockStatDotsOnlyAfterContendingPoints(t *testing.T) {
	v, m := statMutex(t, "late_stat_lock")
	lockclass.SetLockStat(false)
	m.Lock()
	lockclass.SetLockStat(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Lock()
		m.Unlock()
	}()
	require.Eventually(t, func() bool { return contentionPoints(v, "late_stat_lock") == 1 },
		10*time.Second, time.Millisecond, "the second goroutine queues")
	m.Unlock()
	<-done
	rows := statOf(v, "late_stat_lock")
	require.Len(t, rows, 1)
	require.Empty(t, rows[0].ContendingPoints)
	require.Zero(t, rows[0].ConBounces, "a holder lock_stat never saw is no bounce")
	var b strings.Builder
	require.NoError(t, v.WriteLockStat(&b))
	out := b.String()
	require.Regexp(t, `(?m)^ +late_stat_lock +1 +\[<`, out)
	require.NotContains(t, out, strings.Repeat(".", 221))
}

// queued counts the contentions in v's profile: every lock_contended,
// whether or not its site found a contention point.
func queued(v *lockclass.Validator) (n int64) {
	for _, s := range v.ContentionProfile().Sample {
		n += s.Value[0]
	}
	return n
}

// contendOnce takes m by calling lock, holds it until a goroutine that
// calls wait has queued on it, then lets that goroutine through and waits
// for it to unlock: one contention, at wait's site, on lock's.
func contendOnce(t *testing.T, v *lockclass.Validator, m *lockclass.Mutex, lock, wait func()) {
	t.Helper()
	n := queued(v)
	lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait()
		m.Unlock()
	}()
	require.Eventually(t, func() bool { return queued(v) == n+1 }, 10*time.Second, time.Millisecond, "the waiter queues")
	m.Unlock()
	<-done
}

// A spinning lock's first attempt that fails is a contention
// (LOCK_CONTENDED: lock_contended counts the contention point, then
// lock_acquired the wait, which the contentions column counts), as a
// sleeping lock's wait is.
func TestLockStatCountsASpinLocksContention(t *testing.T) {
	krulestest.Check(t)
	lockStatOn(t)
	v := lockclass.NewValidator()
	var s lockclass.SpinLock
	s.Init(lockclass.WithValidator(v), lockclass.WithName("&spun->lock"))
	s.Lock() // a hold ended: the class has its row
	s.Unlock()
	held, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		s.Lock()
		close(held)
		<-release
		s.Unlock()
	}()
	<-held
	go func() {
		defer close(done)
		s.Lock() // spins: contended
		s.Unlock()
	}()
	contended := func() bool {
		rows := statOf(v, "&spun->lock")
		return len(rows) == 1 && len(rows[0].ContentionPoints) == 1 // lock_contended
	}
	require.Eventually(t, contended, 10*time.Second, time.Millisecond, "the spinner counts its contention")
	time.Sleep(time.Millisecond) // a wait to record
	close(release)
	<-done
	rows := statOf(v, "&spun->lock")
	require.EqualValues(t, 1, rows[0].Contentions)
	require.EqualValues(t, 3, rows[0].Acquisitions)
	require.Positive(t, rows[0].WaitTotal, "the wait is recorded")
	require.Len(t, rows[0].ContendingPoints, 1, "where the holder took it")
}

// A class keeps LOCKSTAT_POINTS (4) contention points: the waits at a
// fifth site are counted as contentions but at no point (lock_point finds
// no room).
func TestLockStatKeepsFourContentionPoints(t *testing.T) {
	v, m := statMutex(t, "five_sites_lock")
	hold := func() { m.Lock() }
	for _, wait := range []func(){
		func() { m.Lock() }, func() { m.Lock() }, func() { m.Lock() }, func() { m.Lock() }, func() { m.Lock() },
	} {
		contendOnce(t, v, m, hold, wait)
	}
	rows := statOf(v, "five_sites_lock")
	require.Len(t, rows, 1)
	require.EqualValues(t, 5, rows[0].Contentions)
	require.Len(t, rows[0].ContentionPoints, 4)
	for _, p := range rows[0].ContentionPoints {
		require.EqualValues(t, 1, p.Count)
	}
	require.Equal(t, []int64{5}, counts(rows[0].ContendingPoints), "one holder site")
}

// The contending point is where the holder took the lock this time
// (lockdep_map.ip follows every acquisition): two holder sites, two points.
func TestLockStatNamesEachHoldersSite(t *testing.T) {
	v, m := statMutex(t, "two_holders_lock")
	wait := func() { m.Lock() }
	contendOnce(t, v, m, func() { m.Lock() }, wait)
	contendOnce(t, v, m, func() { m.Lock() }, wait)
	rows := statOf(v, "two_holders_lock")
	require.Len(t, rows, 1)
	require.Equal(t, []int64{2}, counts(rows[0].ContentionPoints), "one waiter site")
	require.Equal(t, []int64{1, 1}, counts(rows[0].ContendingPoints))
}

func counts(pts []lockclass.StatPoint) (n []int64) {
	for _, p := range pts {
		n = append(n, p.Count)
	}
	return n
}

// lock_stat_open sorts the classes by contentions, the most first
// (lock_stat_cmp); a class never contended comes after.
func TestLockStatSortsByContentions(t *testing.T) {
	v, calm := statMutex(t, "calm_lock")
	busy, idle := new(lockclass.Mutex), new(lockclass.Mutex)
	busy.Init(lockclass.WithValidator(v), lockclass.WithName("busy_lock"))
	idle.Init(lockclass.WithValidator(v), lockclass.WithName("idle_lock"))
	idle.Lock()
	idle.Unlock()
	contendOnce(t, v, calm, func() { calm.Lock() }, func() { calm.Lock() })
	for range 2 {
		contendOnce(t, v, busy, func() { busy.Lock() }, func() { busy.Lock() })
	}
	var order []string
	for _, r := range v.LockStats() {
		order = append(order, r.Class)
	}
	require.Equal(t, []string{"busy_lock", "calm_lock", "idle_lock"}, order)
}
