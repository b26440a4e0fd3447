package eventlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Summary is what Verify found in a sound log.
type Summary struct {
	Events uint64 // events in the log
	Head   Hash   // hash of the last event
	Keys   uint64 // view entries compared
}

// Verify checks the whole file. First the pages: Open's check again, and
// on a read-only Log bbolt's own consistency check. Then it replays the
// log: seqs must run from 1 without gaps, every event must decode and
// extend the hash chain, and the stored views must equal what p rebuilds
// from the events into a scratch file. It works on a read-only Log. progress, when set, is called now and then with the
// events checked so far and the total. The error names the first bad page
// or seq, or the first view entry that differs.
func (l *Log) Verify(ctx context.Context, p Projector, progress func(done, total uint64)) (Summary, error) {
	var sum Summary
	// bbolt's own check walks every page in one goroutine: run it beside
	// the replay, which it does not slow much on two cores.
	checked := make(chan error, 1)
	go func() { checked <- l.checkPages() }()
	replayed, err := l.verifyReplay(ctx, p, progress)
	if cerr := <-checked; cerr != nil {
		return sum, cerr
	}
	return replayed, err
}

// verifyReplay is Verify's replay: the chain, and the views compared with
// a rebuild.
func (l *Log) verifyReplay(ctx context.Context, p Projector, progress func(done, total uint64)) (Summary, error) {
	var sum Summary
	head, headHash := l.Head()
	dir, err := os.MkdirTemp("", "minilambda-verify-")
	if err != nil {
		return sum, err
	}
	defer os.RemoveAll(dir)
	scratch, err := bolt.Open(filepath.Join(dir, "views.db"), 0o600, &bolt.Options{
		NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		return sum, err
	}
	defer scratch.Close()
	err = scratch.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket(bucketMeta)
		return err
	})
	if err != nil {
		return sum, err
	}

	c := chainCheck{want: 1, head: head, progress: progress}
	check := func(k, v []byte, e *Event) error { return c.next(k, v, e.Seq, e.Hash) }
	if err := l.project(ctx, scratch, p, 1, check); err != nil {
		return sum, err
	}
	if err := c.end(headHash); err != nil {
		return sum, err
	}
	sum.Events, sum.Head = head, headHash

	err = view(l.db, "comparing the views", func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if head == 0 {
				return nil
			}
			return fmt.Errorf("%w: no meta bucket", ErrViewsDiffer)
		}
		if v := meta.Get(keyViewsSeq); v != nil {
			return fmt.Errorf("%w: views stopped at seq %d, the head is %d", ErrViewsDiffer, binary.BigEndian.Uint64(v), head)
		}
		if v := meta.Get(keyViewsVersion); head > 0 && string(v) != p.Version() {
			return fmt.Errorf("%w: views have version %q, this build writes %q", ErrViewsDiffer, v, p.Version())
		}
		return scratch.View(func(stx *bolt.Tx) error {
			n, err := compareViews(tx, stx)
			sum.Keys = n
			return err
		})
	})
	return sum, err
}

// VerifyChain is Verify without the views: the pages, then seqs from 1
// without gaps, every event decoding and extending the hash chain. It is
// what must hold before the views can be rebuilt from the events.
func (l *Log) VerifyChain(ctx context.Context, progress func(done, total uint64)) (Summary, error) {
	if err := l.checkPages(); err != nil {
		return Summary{}, err
	}
	return l.VerifyEvents(ctx, progress)
}

// VerifyEvents is VerifyChain without the pages: seqs from 1 to the head
// without gaps, every event decoding and extending the hash chain to the
// head's hash. It reads in short transactions, as any reader does, so it
// runs beside appends on a live log; the page walk does not (it must not
// meet pages a writer is reusing, and a transaction held across it would
// hold back the writer's growing of the file).
func (l *Log) VerifyEvents(ctx context.Context, progress func(done, total uint64)) (Summary, error) {
	var sum Summary
	head, headHash := l.Head()
	c := chainCheck{want: 1, head: head, progress: progress}
	for c.want <= head {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		from := c.want
		err := view(l.db, fmt.Sprintf("reading seq %d and on", from), func(tx *bolt.Tx) error {
			cur := tx.Bucket(bucketEvents).Cursor()
			for k, v := cur.Seek(seqKey(from)); k != nil && c.want <= head && c.want-from < projectChunk; k, v = cur.Next() {
				s, err := parse(v)
				if err != nil {
					return fmt.Errorf("%w: seq %d: %v", ErrCorrupt, c.want, err)
				}
				if err := c.next(k, v, s.seq, Hash(s.hash)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return sum, err
		}
		if c.want == from {
			break // nothing past from: end names the gap
		}
	}
	if err := c.end(headHash); err != nil {
		return sum, err
	}
	sum.Events, sum.Head = head, headHash
	return sum, nil
}

// chainCheck follows the log from seq 1: each event must have the next
// seq and extend the hash chain.
type chainCheck struct {
	prev     Hash
	want     uint64
	head     uint64
	progress func(done, total uint64)
}

func (c *chainCheck) next(k, v []byte, seq uint64, hash Hash) error {
	if len(k) != 8 || binary.BigEndian.Uint64(k) != c.want || seq != c.want {
		return fmt.Errorf("%w: seq %d: expected seq %d here", ErrCorrupt, seq, c.want)
	}
	if got := chain(c.prev, v[:len(v)-HashSize]); got != hash {
		return fmt.Errorf("%w: seq %d: hash chain broken (stored %s, computed %s)", ErrCorrupt, seq, hash, got)
	}
	c.prev = hash
	if c.progress != nil && c.want%65536 == 0 {
		c.progress(c.want, c.head)
	}
	c.want++
	return nil
}

func (c *chainCheck) end(headHash Hash) error {
	if c.want-1 != c.head || c.prev != headHash {
		return fmt.Errorf("%w: seq %d: the log ends at seq %d, short of its head", ErrCorrupt, c.head, c.want-1)
	}
	if c.progress != nil {
		c.progress(c.head, c.head)
	}
	return nil
}

// checkPages checks every page of the file again, as Open did, since the
// file may have been damaged since; then, on a read-only Log, it runs
// bbolt's own consistency check and returns an error wrapping ErrCorrupt
// with the first few things it reports. bbolt checks in a goroutine of its
// own, beyond the reach of a recover, so it must only meet a file that can
// be read without a panic or a fault; and its check is not safe alongside
// a writer, hence read-only only. The read transaction around both keeps
// the pages they walk from being reused meanwhile.
func (l *Log) checkPages() error {
	// Again, though Open checked them: the file may have changed since,
	// and bbolt's check trusts the pages it walks (a panic in its own
	// goroutine would end the process).
	if err := checkFile(l.Path(), false, 0); err != nil {
		return err
	}
	if !l.opts.ReadOnly {
		return nil
	}
	// bbolt's check loads a read-only file's freelist while other
	// transactions of the same handle may begin (a data race inside
	// bbolt): it gets a handle of its own.
	var db *bolt.DB
	err := guard("opening the file again", func() (err error) {
		db, err = bolt.Open(l.Path(), 0o600, &bolt.Options{ReadOnly: true, Timeout: l.opts.LockTimeout})
		return err
	})
	if err != nil {
		return err
	}
	defer db.Close()
	var found []string
	n := 0
	err = view(db, "checking the pages", func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			// Drain the channel, or bbolt's goroutine never ends.
			if n++; len(found) < 3 {
				found = append(found, err.Error())
			}
		}
		return nil
	})
	switch {
	case err != nil:
		return err
	case n > len(found):
		return fmt.Errorf("%w: bbolt's check: %s (and %d more)", ErrCorrupt, strings.Join(found, "; "), n-len(found))
	case n > 0:
		return fmt.Errorf("%w: bbolt's check: %s", ErrCorrupt, strings.Join(found, "; "))
	}
	return nil
}

// compareViews compares the views of two files entry by entry and names
// the first difference.
func compareViews(stored, rebuilt *bolt.Tx) (uint64, error) {
	var n uint64
	sn, rn := viewNames(stored), viewNames(rebuilt)
	for i := 0; i < len(sn) || i < len(rn); i++ {
		if i >= len(sn) || i >= len(rn) || !bytes.Equal(sn[i], rn[i]) {
			return n, fmt.Errorf("%w: the sets of views differ (stored %q, rebuilt %q)", ErrViewsDiffer, sn, rn)
		}
		name := sn[i][len(viewPrefix):]
		sc, rc := stored.Bucket(sn[i]).Cursor(), rebuilt.Bucket(rn[i]).Cursor()
		sk, sv := sc.First()
		rk, rv := rc.First()
		for sk != nil || rk != nil {
			switch {
			case sk == nil || (rk != nil && bytes.Compare(rk, sk) < 0):
				return n, fmt.Errorf("%w: view %s: key %q is missing from the stored view", ErrViewsDiffer, name, rk)
			case rk == nil || bytes.Compare(sk, rk) < 0:
				return n, fmt.Errorf("%w: view %s: stored key %q is not in the rebuild", ErrViewsDiffer, name, sk)
			case !bytes.Equal(sv, rv):
				return n, fmt.Errorf("%w: view %s: key %q: stored %q, rebuilt %q", ErrViewsDiffer, name, sk, clip(sv), clip(rv))
			}
			n++
			sk, sv = sc.Next()
			rk, rv = rc.Next()
		}
	}
	return n, nil
}

func clip(b []byte) []byte {
	if len(b) > 200 {
		return append(bytes.Clone(b[:200]), "..."...)
	}
	return b
}
