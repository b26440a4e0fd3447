package eventlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Rebuild drops the views and replays the whole log through p.
func (l *Log) Rebuild(ctx context.Context, p Projector) error {
	err := update(l.db, "dropping the views", func(tx *bolt.Tx) error {
		var names [][]byte
		c := tx.Cursor()
		for k, _ := c.Seek(viewPrefix); k != nil && bytes.HasPrefix(k, viewPrefix); k, _ = c.Next() {
			names = append(names, bytes.Clone(k))
		}
		for _, name := range names {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyViewsVersion, []byte(p.Version())); err != nil {
			return err
		}
		return meta.Put(keyViewsSeq, seqKey(0))
	})
	if err != nil {
		return err
	}
	return l.projectAll(ctx, p, 1)
}

// projectAll brings the views from seq from to the head and marks them in
// step with the log, which later appends keep them.
func (l *Log) projectAll(ctx context.Context, p Projector, from uint64) error {
	if err := l.project(ctx, l.db, p, from, nil); err != nil {
		return err
	}
	return update(l.db, "marking the views in step", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Delete(keyViewsSeq)
	})
}

// catchUp brings the views to the head: from where they stopped if the
// projector is the same, from nothing if it changed.
func (l *Log) catchUp(p Projector) error {
	var version []byte
	seq, behind := uint64(0), false
	err := l.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		version = bytes.Clone(meta.Get(keyViewsVersion))
		if v := meta.Get(keyViewsSeq); len(v) == 8 {
			seq, behind = binary.BigEndian.Uint64(v), true
		}
		return nil
	})
	if err != nil {
		return err
	}
	ctx := context.Background()
	if string(version) != p.Version() {
		if l.headSeq > 0 || version != nil {
			l.log.Info("rebuilding views", "from_version", string(version), "to_version", p.Version(), "events", l.headSeq)
		}
		return l.Rebuild(ctx, p)
	}
	if behind {
		l.log.Info("bringing views up to date", "from_seq", seq, "head", l.headSeq)
		return l.projectAll(ctx, p, seq+1)
	}
	return nil
}

// projectChunk is how many events one rebuild transaction applies: enough
// to amortise the commit, few enough to bound the transaction's memory.
const projectChunk = 8192

// project applies the events from seq from to the head of l to the views in
// dst (l's own file, or a scratch file for Verify), committing every
// projectChunk events along with how far it got. check, when set, sees
// every raw event first. Reading and decoding the next chunk overlaps with
// applying the current one, which on a machine of two cores takes a third
// off a rebuild.
func (l *Log) project(ctx context.Context, dst *bolt.DB, p Projector, from uint64, check func(k, v []byte, e *Event) error) error {
	head, _ := l.Head()
	type chunk struct {
		events   []Event
		prepared []any
		err      error
	}
	prep, _ := p.(Preparer)
	chunks := make(chan chunk, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(chunks)
		in := make(interner)
		for next := from; next <= head; {
			c := chunk{events: make([]Event, 0, projectChunk)}
			c.err = view(l.db, fmt.Sprintf("reading seq %d and on", next), func(tx *bolt.Tx) error {
				cur := tx.Bucket(bucketEvents).Cursor()
				for k, v := cur.Seek(seqKey(next)); k != nil && len(c.events) < projectChunk; k, v = cur.Next() {
					e, err := decode(v, in)
					if err != nil {
						return fmt.Errorf("seq %d: %w", binary.BigEndian.Uint64(k), err)
					}
					if check != nil {
						if err := check(k, v, &e); err != nil {
							return err
						}
					}
					c.events = append(c.events, e)
				}
				return nil
			})
			if prep != nil && c.err == nil {
				c.prepared = make([]any, len(c.events))
				for i := range c.events {
					pe, err := prep.Prepare(&c.events[i])
					if err != nil {
						c.err = fmt.Errorf("%w: seq %d (%s): %v", ErrCorrupt, c.events[i].Seq, c.events[i].Type, err)
						break
					}
					c.prepared[i] = pe
				}
			}
			if c.err == nil && len(c.events) == 0 {
				c.err = fmt.Errorf("%w: seq %d missing below head %d", ErrCorrupt, next, head)
			}
			select {
			case chunks <- c:
			case <-ctx.Done():
				return
			}
			if c.err != nil {
				return
			}
			next = c.events[len(c.events)-1].Seq + 1
		}
	}()
	defer wg.Wait()
	for c := range chunks {
		if c.err != nil {
			return c.err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		events := c.events
		err := update(dst, "writing the views", func(tx *bolt.Tx) error {
			batch := p.Begin(newViewTx(tx))
			pb, _ := batch.(PreparedBatch)
			for i := range events {
				var err error
				if pb != nil && c.prepared != nil {
					err = pb.ApplyPrepared(&events[i], c.prepared[i])
				} else {
					err = batch.Apply(&events[i])
				}
				if err != nil {
					return fmt.Errorf("%w: seq %d (%s): %v", ErrCorrupt, events[i].Seq, events[i].Type, err)
				}
			}
			if err := batch.Flush(); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put(keyViewsSeq, seqKey(events[len(events)-1].Seq))
		})
		if err != nil {
			return err
		}
	}
	return nil
}
