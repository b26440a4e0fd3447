package eventlog

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// ViewReader reads the views. Slices it returns are valid only until the
// callback that received the reader returns; copy what you keep.
type ViewReader interface {
	// Get returns the value under key in view, or nil.
	Get(view string, key []byte) []byte
	// Scan calls fn for each key of view that starts with prefix, in key
	// order or in reverse, beginning at start (inclusive) when start is not
	// nil, until fn returns false.
	Scan(view string, prefix, start []byte, reverse bool, fn func(k, v []byte) bool) error
	// Event returns the event at seq, so that views can point into the log
	// instead of copying large payloads.
	Event(seq uint64) (Event, error)
}

// ViewTx is what a Projector may change inside an append's transaction.
type ViewTx interface {
	ViewReader
	Put(view string, key, value []byte) error
	Delete(view string, key []byte) error
}

// Projector derives the views from events. Open brings the views up to the
// head of the log with it, and every append runs it in the append's
// transaction.
type Projector interface {
	// Version names the views' layout; a change of version rebuilds them.
	Version() string
	// Begin starts applying a run of events to tx.
	Begin(tx ViewTx) Batch
}

// Preparer is an optional part of a Projector: the work on an event that
// needs no views, such as decoding its payload. Rebuild and Verify run it
// on the next events while the current ones are applied, and hand its
// result to the batch's ApplyPrepared.
type Preparer interface {
	Prepare(e *Event) (any, error)
}

// PreparedBatch is a Batch that takes what Preparer made of an event.
type PreparedBatch interface {
	Batch
	ApplyPrepared(e *Event, prepared any) error
}

// Batch applies a run of events in order. A Batch may keep state in memory
// between calls to Apply, but it must have written everything to its
// transaction when Flush returns. Errors abort the transaction.
type Batch interface {
	Apply(e *Event) error
	Flush() error
}

type viewTx struct {
	tx      *bolt.Tx
	events  *bolt.Bucket // nil in Verify's scratch file
	buckets map[string]*bolt.Bucket
}

func newViewTx(tx *bolt.Tx) *viewTx {
	return &viewTx{tx: tx, events: tx.Bucket(bucketEvents), buckets: make(map[string]*bolt.Bucket)}
}

// viewFill is the page fill for views: their keys are mostly ULIDs, which
// arrive in ascending order, so pages split at bbolt's default of half full
// would stay half empty.
const viewFill = 0.9

func (t *viewTx) Event(seq uint64) (Event, error) {
	if t.events == nil {
		return Event{}, fmt.Errorf("%w: no events here", ErrCorrupt)
	}
	v := t.events.Get(seqKey(seq))
	if v == nil {
		return Event{}, fmt.Errorf("%w: seq %d missing", ErrCorrupt, seq)
	}
	return Decode(v)
}

// viewNames lists the views' buckets of tx that hold anything, in order.
func viewNames(tx *bolt.Tx) [][]byte {
	var out [][]byte
	c := tx.Cursor()
	for k, _ := c.Seek(viewPrefix); k != nil && bytes.HasPrefix(k, viewPrefix); k, _ = c.Next() {
		if first, _ := tx.Bucket(k).Cursor().First(); first != nil {
			out = append(out, bytes.Clone(k))
		}
	}
	return out
}

func (t *viewTx) bucket(name string, create bool) (*bolt.Bucket, error) {
	if b, ok := t.buckets[name]; ok {
		return b, nil
	}
	full := append(append([]byte(nil), viewPrefix...), name...)
	b := t.tx.Bucket(full)
	if b == nil && create {
		var err error
		if b, err = t.tx.CreateBucket(full); err != nil {
			return nil, fmt.Errorf("create view %q: %w", name, err)
		}
	}
	if b != nil {
		b.FillPercent = viewFill
		t.buckets[name] = b
	}
	return b, nil
}

func (t *viewTx) Get(view string, key []byte) []byte {
	b, _ := t.bucket(view, false)
	if b == nil {
		return nil
	}
	return b.Get(key)
}

func (t *viewTx) Put(view string, key, value []byte) error {
	b, err := t.bucket(view, true)
	if err != nil {
		return err
	}
	if value == nil {
		// bbolt stores nil as an empty value; say so to keep Get honest.
		value = []byte{}
	}
	return b.Put(key, value)
}

func (t *viewTx) Delete(view string, key []byte) error {
	b, err := t.bucket(view, false)
	if err != nil || b == nil {
		return err
	}
	return b.Delete(key)
}

func (t *viewTx) Scan(view string, prefix, start []byte, reverse bool, fn func(k, v []byte) bool) error {
	b, err := t.bucket(view, false)
	if err != nil || b == nil {
		return err
	}
	c := b.Cursor()
	var k, v []byte
	switch {
	case !reverse && start != nil:
		k, v = c.Seek(start)
	case !reverse:
		k, v = c.Seek(prefix)
	default:
		k, v = seekLast(c, prefix, start)
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = step(c, reverse) {
		if !fn(k, v) {
			return nil
		}
	}
	return nil
}

func step(c *bolt.Cursor, reverse bool) ([]byte, []byte) {
	if reverse {
		return c.Prev()
	}
	return c.Next()
}

// seekLast positions c on the last key <= start, or on the last key with
// prefix when start is nil.
func seekLast(c *bolt.Cursor, prefix, start []byte) ([]byte, []byte) {
	target := start
	if target == nil {
		target = upperBound(prefix)
	}
	if target == nil {
		return c.Last()
	}
	k, v := c.Seek(target)
	switch {
	case k == nil:
		return c.Last()
	case start != nil && bytes.Equal(k, start):
		return k, v
	default:
		return c.Prev()
	}
}

// upperBound returns the smallest key greater than every key with prefix p,
// or nil when there is none (p empty or all 0xff).
func upperBound(p []byte) []byte {
	u := bytes.Clone(p)
	for i := len(u) - 1; i >= 0; i-- {
		if u[i] < 0xff {
			u[i]++
			return u[:i+1]
		}
	}
	return nil
}
