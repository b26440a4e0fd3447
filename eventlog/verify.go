package eventlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// Summary is what Verify found in a sound log.
type Summary struct {
	Events uint64 // events in the log
	Head   Hash   // hash of the last event
	Keys   uint64 // view entries compared
}

// Verify replays the whole log: seqs must run from 1 without gaps, every
// event must decode and extend the hash chain, and the stored views must
// equal what p rebuilds from the events into a scratch file. It works on a
// read-only Log. progress, when set, is called now and then with the events
// checked so far and the total. The error names the first bad seq, or the
// first view entry that differs.
func (l *Log) Verify(ctx context.Context, p Projector, progress func(done, total uint64)) (Summary, error) {
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

	var prev Hash
	want := uint64(1)
	check := func(k, v []byte, e *Event) error {
		if len(k) != 8 || binary.BigEndian.Uint64(k) != want || e.Seq != want {
			return fmt.Errorf("%w: seq %d: expected seq %d here", ErrCorrupt, e.Seq, want)
		}
		if got := chain(prev, v[:len(v)-HashSize]); got != e.Hash {
			return fmt.Errorf("%w: seq %d: hash chain broken (stored %s, computed %s)", ErrCorrupt, e.Seq, e.Hash, got)
		}
		prev = e.Hash
		if progress != nil && want%65536 == 0 {
			progress(want, head)
		}
		want++
		return nil
	}
	if err := l.project(ctx, scratch, p, 1, check); err != nil {
		return sum, err
	}
	if want-1 != head || prev != headHash {
		return sum, fmt.Errorf("%w: seq %d: the log ends at seq %d, short of its head", ErrCorrupt, head, want-1)
	}
	if progress != nil {
		progress(head, head)
	}
	sum.Events, sum.Head = head, headHash

	err = l.db.View(func(tx *bolt.Tx) error {
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
