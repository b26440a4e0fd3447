package eventlog

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	bucketEvents = []byte("events")
	bucketMeta   = []byte("meta")
	// viewPrefix starts the names of the views' buckets, which sit at the
	// top level: a nested bucket would add a page to every commit.
	viewPrefix = []byte("view.")

	keyViewsSeq     = []byte("views_seq")
	keyViewsVersion = []byte("views_version")
	// keyProbe is what Writable writes to see whether the file takes writes.
	keyProbe = []byte("probe")
)

// Options configure Open. The zero value opens the file for writing with no
// views.
type Options struct {
	// ReadOnly opens the file with a shared lock for dump and audit: no
	// appends, no rebuild of the views.
	ReadOnly bool
	// LockTimeout bounds the wait for another process's lock; 2 s when zero.
	LockTimeout time.Duration
	// Projector keeps the views; nil keeps none.
	Projector Projector
	// Logger receives rebuild and commit failures; nil discards.
	Logger *slog.Logger
	// MaxBatch caps the events of one group commit; 8192 when zero.
	MaxBatch int
	// MaxBatchBytes caps the bytes of events of one group commit (a group
	// is never split); 32 MiB when zero. A commit holds its events two or
	// three times over until it is on disk: large events must not pile up.
	MaxBatchBytes int
	// OnCommit, when set, is told of each commit that appended events.
	OnCommit func(CommitStats)
	// OnUnwritable, when set, is told of each commit the file refused.
	OnUnwritable func(err error)
	// NoSync skips fsync. Only for scratch files and tests: an append that
	// returned may be lost.
	NoSync bool
}

// CommitStats describe one commit of the log writer.
type CommitStats struct {
	// Events is how many events the commit appended.
	Events int
	// Duration is the commit's time, from the writer taking its first
	// request until the commit is on disk.
	Duration time.Duration
	// CPU is the writer's own CPU time in that span (zero where the
	// platform cannot tell a thread's CPU time).
	CPU time.Duration
	// Pages is how many pages the transaction wrote.
	Pages int
}

// Log is an open event log. Its methods are safe for concurrent use.
type Log struct {
	db   *bolt.DB
	opts Options
	log  *slog.Logger

	// mu guards closed, head, changed and unwritable; the writer goroutine
	// alone moves the head.
	mu       sync.RWMutex
	closed   bool
	headSeq  uint64
	headHash Hash
	changed  chan struct{}
	// unwritable is the error of the last commit when the file refused
	// it, nil once a commit or a probe succeeds; need is the bytes of
	// events that commit held; probed is when Writable last tried the file.
	unwritable error
	need       int
	probed     time.Time

	reqs    chan *request
	stopped chan struct{}
	entropy io.Reader
}

type request struct {
	events []Event
	// prepared is the projector's Prepare of each event, made by the
	// caller so that the writer's serial section does not; nil when the
	// projector has no Preparer.
	prepared []any
	// stored is each event's stored value, encoded by the writer before
	// its transaction for the seqs it expects the group to take.
	stored [][]byte
	cond   func(ViewReader) error
	err    error
	done   chan struct{}
}

// Open opens or creates the log at path and brings its views up to date.
//
// A new log is made only where no file exists. An existing file is checked
// before bbolt reads it (see "Damaged files" in the package doc): one that
// is empty, not a bbolt file, not an event log, or damaged is an error
// wrapping ErrCorrupt that names the page or the seq at fault.
func Open(path string, opts Options) (*Log, error) {
	if opts.LockTimeout == 0 {
		opts.LockTimeout = 2 * time.Second
	}
	if opts.MaxBatch == 0 {
		opts.MaxBatch = 8192
	}
	if opts.MaxBatchBytes == 0 {
		opts.MaxBatchBytes = 32 << 20
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	switch _, err := os.Stat(path); {
	case err == nil:
		if err := checkFile(path, true, opts.LockTimeout); err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	case opts.ReadOnly || !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	var db *bolt.DB
	err := guard("opening the file", func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout:        opts.LockTimeout,
			ReadOnly:       opts.ReadOnly,
			NoFreelistSync: true,
			FreelistType:   bolt.FreelistMapType,
			NoSync:         opts.NoSync,
		})
		return err
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
	}
	if err != nil {
		if errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrVersionMismatch) || errors.Is(err, berrors.ErrChecksum) {
			return nil, fmt.Errorf("open %s: %w: %v", path, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	l := &Log{
		db:      db,
		opts:    opts,
		log:     logger.With("subsystem", "eventlog"),
		changed: make(chan struct{}),
		stopped: make(chan struct{}),
		entropy: ulid.Monotonic(rand.Reader, 0),
	}
	if err := guard("reading the head", l.init); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if opts.ReadOnly {
		l.closed = true // no writer: Append reports ErrReadOnly
		close(l.stopped)
		return l, nil
	}
	if opts.Projector != nil {
		err := guard("bringing the views up to date", func() error { return l.catchUp(opts.Projector) })
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("open %s: views: %w", path, err)
		}
	}
	l.reqs = make(chan *request, 1024)
	go l.writer()
	return l, nil
}

func (l *Log) init() error {
	if !l.opts.ReadOnly {
		err := l.db.Update(func(tx *bolt.Tx) error {
			for _, name := range [][]byte{bucketEvents, bucketMeta} {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return l.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if b == nil {
			return nil // a read-only open of a file that never had an event
		}
		k, v := b.Cursor().Last()
		if k == nil {
			return nil
		}
		e, err := Decode(v)
		if err != nil {
			return fmt.Errorf("last event: %w", err)
		}
		if len(k) != 8 || binary.BigEndian.Uint64(k) != e.Seq {
			return fmt.Errorf("%w: last key does not match seq %d", ErrCorrupt, e.Seq)
		}
		l.headSeq, l.headHash = e.Seq, e.Hash
		return nil
	})
}

// Close stops accepting appends, commits what has queued and closes the
// file.
func (l *Log) Close() error {
	l.mu.Lock()
	wasClosed := l.closed
	l.closed = true
	l.mu.Unlock()
	if !wasClosed {
		close(l.reqs)
	}
	<-l.stopped
	return l.db.Close()
}

// Head returns the seq and hash of the last event; 0 and zeros when empty.
func (l *Log) Head() (uint64, Hash) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.headSeq, l.headHash
}

// Path returns the file's path.
func (l *Log) Path() string { return l.db.Path() }

// Append durably appends events as one atomic group and returns them with
// seq, id, time and hashes assigned. It returns once the group's commit is
// fsynced; an error means none of the group was written.
func (l *Log) Append(ctx context.Context, events ...Event) ([]Event, error) {
	return l.AppendIf(ctx, nil, events...)
}

// AppendIf is Append with a condition checked inside the transaction,
// after every earlier append: when cond returns an error nothing is written
// and AppendIf returns that error. It makes check-then-write atomic, as for
// a function name that must be unique.
func (l *Log) AppendIf(ctx context.Context, cond func(ViewReader) error, events ...Event) ([]Event, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: no events", ErrInvalid)
	}
	for i := range events {
		if err := validate(&events[i]); err != nil {
			return nil, err
		}
	}
	r := &request{events: append([]Event(nil), events...), cond: cond, done: make(chan struct{})}
	if p, ok := l.opts.Projector.(Preparer); ok {
		r.prepared = make([]any, len(r.events))
		for i := range r.events {
			var err error
			if r.prepared[i], err = p.Prepare(&r.events[i]); err != nil {
				return nil, fmt.Errorf("%w: %s event: %w", ErrInvalid, r.events[i].Type, err)
			}
		}
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		if l.opts.ReadOnly {
			return nil, ErrReadOnly
		}
		return nil, ErrClosed
	}
	select {
	case l.reqs <- r:
	case <-ctx.Done():
		l.mu.RUnlock()
		return nil, ctx.Err()
	}
	l.mu.RUnlock()
	// Once queued, the group may commit at any moment, so wait for the
	// outcome even if ctx ends: answering early could deny a durable write.
	<-r.done
	if r.err != nil {
		return nil, r.err
	}
	return r.events, nil
}

func (l *Log) writer() {
	defer close(l.stopped)
	// One thread for the writer, so that its thread's CPU time is the
	// commits' own (CommitStats.CPU).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	batch := make([]*request, 0, 64)
	for r := range l.reqs {
		batch = append(batch[:0], r)
		n, size := len(r.events), r.size()
	drain:
		for n < l.opts.MaxBatch && size < l.opts.MaxBatchBytes {
			select {
			case r, ok := <-l.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
				n, size = n+len(r.events), size+r.size()
			default:
				break drain
			}
		}
		l.commit(batch)
		// The backing array outlives the batch: let go of its requests,
		// whose events can be megabytes.
		clear(batch)
	}
}

// commit writes batch in one transaction. If the transaction fails, each
// group is tried alone so that one bad group cannot fail the others.
func (l *Log) commit(batch []*request) {
	start, cpu0 := time.Now(), threadCPU()
	// Pages written count as the transaction commits, after its function
	// returns: the file's running total tells them.
	stats0 := l.db.Stats().TxStats
	seq, head := l.Head()
	now := time.Now().UTC()
	// Encode and hash every event before the transaction, as though every
	// group's condition will hold; a group refused moves the seqs of the
	// groups after it, which are then encoded again inside.
	at, prev := seq, head
	for _, r := range batch {
		if err := l.stamp(r, at, prev, now); err != nil {
			for _, r := range batch {
				r.err = fmt.Errorf("append: %w", err)
				close(r.done)
			}
			return
		}
		at, prev = r.events[len(r.events)-1].Seq, r.events[len(r.events)-1].Hash
	}
	var appended int
	var groupErr error // a group's own events failed, not the file
	err := update(l.db, "appending", func(tx *bolt.Tx) error {
		appended, groupErr = 0, nil
		for _, r := range batch {
			r.err = nil
			if r.events[0].Seq != seq+1 || r.events[0].Prev != head {
				if err := l.stamp(r, seq, head, now); err != nil {
					return err
				}
			}
			n, err := l.writeGroup(tx, r, seq)
			if err != nil {
				groupErr = err
				return err
			}
			if n > 0 {
				seq, head = r.events[n-1].Seq, r.events[n-1].Hash
				appended += n
			}
		}
		if appended == 0 || l.opts.Projector != nil {
			return nil
		}
		// Appended without views: mark where they stopped, once, so the
		// next open with a projector catches up from there.
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keyViewsSeq) != nil {
			return nil
		}
		before, _ := l.Head()
		return meta.Put(keyViewsSeq, seqKey(before))
	})
	switch {
	case err != nil && groupErr == nil && !errors.Is(err, ErrCorrupt):
		// The file refused the commit (a full disk, an I/O error): every
		// group fails alike, and tells its caller so.
		l.log.Error("commit failed: the event log cannot be written", "events", len(batch), "err", err)
		l.setUnwritable(err, batchSize(batch))
		if l.opts.OnUnwritable != nil {
			l.opts.OnUnwritable(err)
		}
		for _, r := range batch {
			r.err = fmt.Errorf("append: %w: %w", ErrUnwritable, err)
		}
	case err != nil && len(batch) > 1:
		// One group's events failed: try each alone, so the others land.
		for _, r := range batch {
			l.commit([]*request{r})
		}
		return
	case err != nil:
		l.log.Error("commit failed", "events", len(batch[0].events), "err", err)
		batch[0].err = fmt.Errorf("append: %w", err)
	case appended > 0:
		l.mu.Lock()
		l.headSeq, l.headHash = seq, head
		l.unwritable = nil
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
		if l.opts.OnCommit != nil {
			stats := l.db.Stats().TxStats
			st := CommitStats{Events: appended, Duration: time.Since(start), Pages: int(stats.GetWrite() - stats0.GetWrite())}
			if cpu0 >= 0 {
				st.CPU = threadCPU() - cpu0
			}
			l.opts.OnCommit(st)
		}
	}
	for _, r := range batch {
		close(r.done)
	}
}

// stamp gives r's events the seqs after seq, chained from head, fresh ids
// and the time now, and encodes them.
func (l *Log) stamp(r *request, seq uint64, head Hash, now time.Time) error {
	if r.stored == nil {
		r.stored = make([][]byte, len(r.events))
	}
	for i := range r.events {
		e := &r.events[i]
		id, err := ulid.New(ulid.Timestamp(now), l.entropy)
		if err != nil {
			return err
		}
		seq++
		e.Seq, e.ID, e.Time, e.Prev = seq, id, now, head
		r.stored[i] = encode(e)
		head = e.Hash
	}
	return nil
}

// writeGroup appends one request's events, stamped for the seqs after
// seq, and applies the projector. It returns how many events it wrote: 0
// when the condition refused the group, whose error is then in r.err.
func (l *Log) writeGroup(tx *bolt.Tx, r *request, seq uint64) (int, error) {
	views := newViewTx(tx)
	if r.cond != nil {
		if err := r.cond(views); err != nil {
			r.err = err
			return 0, nil
		}
	}
	var batch Batch
	var prepared PreparedBatch
	if l.opts.Projector != nil {
		batch = l.opts.Projector.Begin(views)
		if r.prepared != nil {
			prepared, _ = batch.(PreparedBatch)
		}
	}
	events := tx.Bucket(bucketEvents)
	// Seqs only ever grow, so pages can fill up before they split.
	events.FillPercent = 1.0
	for i := range r.events {
		e := &r.events[i]
		next, err := events.NextSequence()
		if err != nil {
			return 0, err
		}
		if next != seq+1 || e.Seq != next {
			return 0, fmt.Errorf("%w: sequence %d after head %d", ErrCorrupt, next, seq)
		}
		if err := events.Put(seqKey(next), r.stored[i]); err != nil {
			return 0, err
		}
		seq = next
		switch {
		case prepared != nil:
			err = prepared.ApplyPrepared(e, r.prepared[i])
		case batch != nil:
			err = batch.Apply(e)
		}
		if err != nil {
			return 0, fmt.Errorf("project %s seq %d: %w", e.Type, e.Seq, err)
		}
	}
	if batch != nil {
		if err := batch.Flush(); err != nil {
			return 0, err
		}
	}
	return len(r.events), nil
}

// size is the bytes of a request's events.
func (r *request) size() int {
	n := 0
	for i := range r.events {
		n += len(r.events[i].Data)
	}
	return n
}

func batchSize(batch []*request) int {
	n := 0
	for _, r := range batch {
		n += r.size()
	}
	return n
}

func (l *Log) setUnwritable(err error, need int) {
	l.mu.Lock()
	l.unwritable, l.need = err, need
	l.mu.Unlock()
}

// probeEvery bounds how often Writable tries the file; roomSlack is the
// room beyond a refused commit's events that a full disk must have again
// (new pages are written before old ones are freed, and the file grows in
// steps).
const (
	probeEvery = time.Second
	roomSlack  = 16 << 20
)

// Writable reports whether the log can take appends: nil, or, after a
// commit the file refused, an error wrapping ErrUnwritable until a commit
// succeeds again, or until Writable finds by itself that the file would
// take it. After a full disk it asks the file system for the room the
// refused commit needed; after another error it tries the file with a write
// that changes nothing the log holds (one meta key, rewritten). Either
// happens at most once a second.
func (l *Log) Writable() error {
	// The common case, on every invocation's path: nothing to probe.
	l.mu.RLock()
	err := l.unwritable
	l.mu.RUnlock()
	if err == nil {
		return nil
	}
	l.mu.Lock()
	err, need, due := l.unwritable, l.need, time.Since(l.probed) >= probeEvery
	if err != nil && due {
		l.probed = time.Now()
	}
	l.mu.Unlock()
	if err == nil || !due {
		return wrapUnwritable(err)
	}
	var perr error
	if free, ferr := freeBytes(filepath.Dir(l.Path())); ferr == nil && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
		if free < uint64(need+roomSlack) {
			perr = err
		}
	} else {
		perr = update(l.db, "probing", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyProbe, []byte("writable"))
		})
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if perr == nil {
		l.unwritable = nil
	}
	return wrapUnwritable(l.unwritable)
}

func wrapUnwritable(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrUnwritable, err)
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }

// View runs fn with a consistent read of the views. A panic while it runs,
// which is how bbolt meets a damaged page, is an error wrapping
// ErrCorrupt.
func (l *Log) View(fn func(ViewReader) error) error {
	return view(l.db, "reading the views", func(tx *bolt.Tx) error {
		return fn(newViewTx(tx))
	})
}

// view runs fn in a read transaction of db, and update in a write
// transaction, with a panic or a memory fault inside bbolt turned into an
// error: see guard. what names what fn reads, for the error.
func view(db *bolt.DB, what string, fn func(*bolt.Tx) error) error {
	return guard(what, func() error { return db.View(fn) })
}

func update(db *bolt.DB, what string, fn func(*bolt.Tx) error) error {
	return guard(what, func() error { return db.Update(fn) })
}
