package lockclass

// Option configures a lock or lock map at initialisation: Init, NewMap.
type Option func(*mapConfig)

// mapConfig is what lockdep_init_map_type records in a lockdep_map. It is
// immutable once published; re-keying publishes a new one.
type mapConfig struct {
	key   *Key
	name  string
	sub   int
	v     *Validator
	inner uint8 // wait types, printed as {outer:inner}
	outer uint8
	wait  waitCtx // what check_wait_context compares (waitcontext.go)
	site  uintptr
	// queued makes an RWLock's readers a queued rwlock's (QueuedReaders).
	queued bool
	// dead is the warning a use of a destroyed lock prints (mutex_destroy
	// clears lock->magic, which DEBUG_MUTEXES and DEBUG_RWSEMS check on
	// every lock and unlock); empty while the lock is alive.
	dead string
}

// WithKey puts the lock in key's class instead of its initialisation site's
// (lockdep_set_class).
func WithKey(key *Key) Option { return func(c *mapConfig) { c.key = key } }

// WithName sets the class name reports print, such as "&mm->mmap_lock".
func WithName(name string) Option { return func(c *mapConfig) { c.name = name } }

// WithSubclass makes subclass sub the lock's default: its plain
// acquisitions then use that subclass, as lockdep_set_subclass does (the
// kernel's "cache abuse"). Subclasses run 0 to 7.
func WithSubclass(sub int) Option { return func(c *mapConfig) { c.sub = sub } }

// WithValidator validates the lock in v instead of the default validator.
// Dependencies are recorded only between locks of one validator: a lock of
// another validator held at the same time is invisible to v's checks (it is
// still part of the held-lock list and of the chain key).
func WithValidator(v *Validator) Option { return func(c *mapConfig) { c.v = v } }

// NoValidate puts the lock in the no-validate class
// (lockdep_set_novalidate_class): it is tracked (held-lock lists, unlock
// balance, freed and held-at-exit checks) but never ordered against other
// locks, as rcu_read_lock's check==0 acquisitions are.
func NoValidate() Option { return func(c *mapConfig) { c.key = &noValidateKey } }

// NoTrack puts the lock in the no-track class (lockdep_set_notrack_class):
// the validator ignores it entirely, so it appears nowhere and AssertHeld on
// it fails.
func NoTrack() Option { return func(c *mapConfig) { c.key = &noTrackKey } }

// QueuedReaders makes an RWLock's readers those of a queued rwlock in
// process context (CONFIG_QUEUED_RWLOCKS, which x86 and arm64 select):
// read_lock is a non-recursive read (read = 1, as rwlock_acquire_read
// passes when read_lock_is_recursive is false), so taking it twice is
// reported as recursive locking and a cycle through a read hold is proved;
// and a reader waits while a writer waits (queued_read_lock_slowpath), so
// a second read_lock behind a waiting writer deadlocks, as it does in the
// kernel. Without it RWLock's readers are recursive, as lockdep's selftests
// force them (force_read_lock_recursive). Other lock types ignore it.
func QueuedReaders() Option { return func(c *mapConfig) { c.queued = true } }

// waitTypes sets the kernel's wait types; the lock types use it.
func waitTypes(inner, outer uint8) Option {
	return func(c *mapConfig) { c.inner, c.outer = inner, outer }
}
