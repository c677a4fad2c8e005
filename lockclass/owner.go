package lockclass

import "github.com/krules/krules/internal/task"

// owner remembers the goroutine whose held-lock stack has a lock's entry
// (the writer's, for the read-write locks), so that Unlock compares goroutine
// ids instead of walking the task table. It is written by the holder only.
// id says whether there is a holder; with id 0, t is stale (Mutex keeps it
// as its next Lock's guess at the caller's record) and must not be used.
type owner struct {
	t  *task.Task
	id int64
}

// set records t as the holder; a nil t (an untracked acquisition) is ignored.
func (o *owner) set(t *task.Task) {
	if t != nil {
		o.t, o.id = t, t.ID
	}
}

// release forgets the holder and drops m's held-lock entry: from the
// holder's own stack if the caller is the holder, or else as a release by
// another goroutine, which the validator reports (bad unlock balance). It
// reports whether there was a tracked holder.
func (o *owner) release(m *Map) bool {
	t, id := o.t, o.id
	if id == 0 {
		return false
	}
	o.id = 0 // t stays: the holder's next Lock's guess at its record
	if id == task.ID() {
		release(m, t)
	} else {
		releaseShared(m)
	}
	return true
}

// claim finds the record of goroutine id, the caller, when the guess in
// o.t was not it, and makes it the guess for next time (o.id says whether
// it holds). id may be 0, task.GoID's "unknown".
//
//go:noinline
func (o *owner) claim(id int64) *task.Task {
	t := task.ClaimHead(id)
	if t == nil {
		t = claimID(id)
	}
	o.t = t
	return t
}

// claimID is task.Claim for an id from task.SiteID or task.GoID, which may
// be 0 ("unknown"): the id is then looked up.
//
//go:noinline
func claimID(id int64) *task.Task {
	if id == 0 {
		id = task.ID()
	}
	return task.Claim(id)
}
