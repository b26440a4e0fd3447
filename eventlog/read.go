package eventlog

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Filter selects events; empty fields match everything.
type Filter struct {
	Type         string
	FunctionID   string
	InvocationID string
}

func (f Filter) match(e *Event) bool {
	return (f.Type == "" || f.Type == e.Type) &&
		(f.FunctionID == "" || f.FunctionID == e.FunctionID) &&
		(f.InvocationID == "" || f.InvocationID == e.InvocationID)
}

// readChunk bounds the events read in one transaction, so a long read never
// holds back the writer; readChunkBytes bounds the bytes a chunk holds,
// since an event can be megabytes.
const (
	readChunk      = 1024
	readChunkBytes = 4 << 20
)

// Read calls fn for each event matching f from seq from (1 is the first) to
// the last one committed when it is called, in order, until fn returns an
// error.
func (l *Log) Read(ctx context.Context, from uint64, f Filter, fn func(Event) error) error {
	// The committed head, not Head(): a commit is visible to readers (its
	// views among them) a moment before the writer moves Head, and a reader
	// that saw a view change must find the event that made it.
	var head uint64
	err := view(l.db, "reading the head", func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketEvents); b != nil {
			if k, _ := b.Cursor().Last(); len(k) == 8 {
				head = binary.BigEndian.Uint64(k)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	_, err = l.readRange(ctx, from, head, f, fn)
	return err
}

// ReadRange is Read between seqs from and to, both included.
func (l *Log) ReadRange(ctx context.Context, from, to uint64, f Filter, fn func(Event) error) error {
	_, err := l.readRange(ctx, from, to, f, fn)
	return err
}

// readRange reads [from, to] and returns the seq after the last one read.
func (l *Log) readRange(ctx context.Context, from, to uint64, f Filter, fn func(Event) error) (uint64, error) {
	if from == 0 {
		from = 1
	}
	buf := make([]Event, 0, readChunk)
	for from <= to {
		if err := ctx.Err(); err != nil {
			return from, err
		}
		buf = buf[:0]
		next := from
		err := view(l.db, fmt.Sprintf("reading seq %d and on", from), func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketEvents)
			if b == nil {
				return nil
			}
			var prev Hash
			if from > 1 {
				v := b.Get(seqKey(from - 1))
				if len(v) < HashSize {
					return fmt.Errorf("%w: seq %d missing", ErrCorrupt, from-1)
				}
				copy(prev[:], v[len(v)-HashSize:])
			}
			// A chunk is bounded by the events it reads, matched or not: a
			// filter that matches little must not make one transaction span
			// the log.
			c := b.Cursor()
			n, size := 0, 0
			for k, v := c.Seek(seqKey(from)); k != nil && n < readChunk && (size < readChunkBytes || n == 0); k, v = c.Next() {
				seq := binary.BigEndian.Uint64(k)
				if seq > to {
					break
				}
				n, size = n+1, size+len(v)
				e, err := Decode(v)
				if err != nil {
					return fmt.Errorf("seq %d: %w", seq, err)
				}
				e.Prev, prev = prev, e.Hash
				next = seq + 1
				if f.match(&e) {
					buf = append(buf, e)
				}
			}
			return nil
		})
		if err != nil {
			return from, err
		}
		for _, e := range buf {
			if err := fn(e); err != nil {
				return from, err
			}
		}
		if next == from {
			break
		}
		from = next
	}
	return from, nil
}

// Follow calls fn for each event matching f from seq from on, waiting for
// new commits, until ctx ends or fn returns an error.
func (l *Log) Follow(ctx context.Context, from uint64, f Filter, fn func(Event) error) error {
	if from == 0 {
		from = 1
	}
	for {
		l.mu.RLock()
		changed, head, closed := l.changed, l.headSeq, l.closed
		l.mu.RUnlock()
		if head >= from {
			next, err := l.readRange(ctx, from, head, f, fn)
			if err != nil {
				return err
			}
			from = next
			continue
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
