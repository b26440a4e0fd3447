package eventlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/minilambda/minilambda/eventlog/internal/boltcheck"
)

// checkFile checks the file at path before bbolt reads it (see "Damaged
// files" in the package doc): boltcheck walks bbolt's pages, and the hooks
// here check that the file is an event log and that its events bucket
// holds seqs from 1 without gaps. It returns an error wrapping ErrCorrupt
// for the first damage, or ErrLocked. Unless the caller holds bbolt's lock
// on the file already, lock says to hold a shared lock while it reads,
// waiting at most timeout for it.
func checkFile(path string, lock bool, timeout time.Duration) error {
	err := boltcheck.Check(path, boltcheck.Options{
		Lock:        lock,
		LockTimeout: timeout,
		Bucket: func(name []byte) boltcheck.Entries {
			if bytes.Equal(name, bucketEvents) {
				return &eventsWalk{want: 1}
			}
			return nil
		},
		TopLevel: isEventLog,
	})
	switch {
	case errors.Is(err, boltcheck.ErrLocked):
		return ErrLocked
	case errors.Is(err, boltcheck.ErrEmpty):
		return corruptf("the file is empty; a new event log is made only where no file exists")
	case errors.Is(err, boltcheck.ErrNotBolt):
		return corruptf("not an event log: %v", err)
	}
	return corrupt(err)
}

// isEventLog refuses a bbolt file whose top-level buckets, named in key
// order, hold something else and no events. A file with no buckets at all
// is a log that never had an event.
func isEventLog(names [][]byte) error {
	var foreign []byte
	for _, name := range names {
		if bytes.Equal(name, bucketEvents) {
			return nil
		}
		if foreign == nil && !bytes.Equal(name, bucketMeta) && !bytes.HasPrefix(name, viewPrefix) {
			foreign = name
		}
	}
	if foreign != nil {
		return corruptf("not an event log: it has no %q bucket but holds %q", bucketEvents, foreign)
	}
	return nil
}

// guard runs fn and turns a panic, or a memory fault (a read outside the
// file bbolt maps), into an error wrapping ErrCorrupt that names what was
// being read: see boltcheck.Guard.
func guard(what string, fn func() error) error {
	return corrupt(boltcheck.Guard(what, fn))
}

// corrupt turns the damage boltcheck found into an error wrapping
// ErrCorrupt; other errors it returns as they are.
func corrupt(err error) error {
	if d, ok := errors.AsType[*boltcheck.Damage](err); ok {
		return corruptf("%v", d)
	}
	return err
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// eventsWalk checks the events bucket as the walk meets its entries in
// key order: seqs from 1 without gaps, each value an event of that seq.
// The hash chain is Verify's business: it costs a SHA-256 of every event.
type eventsWalk struct {
	want uint64
}

func (w *eventsWalk) Next(k, v []byte) error {
	if len(k) != 8 || binary.BigEndian.Uint64(k) != w.want {
		return corruptf("seq %d: missing, the events bucket has key %x there", w.want, k)
	}
	s, err := parse(v)
	if err != nil {
		return corruptf("seq %d: %v", w.want, err)
	}
	if s.seq != w.want {
		return corruptf("seq %d: the event stored there says seq %d", w.want, s.seq)
	}
	w.want++
	return nil
}

// End checks the bucket's sequence, from which the next append takes its
// seq, against the last event.
func (w *eventsWalk) End(sequence uint64) error {
	if sequence != w.want-1 {
		return corruptf("the events bucket's sequence is %d, but the last event is seq %d", sequence, w.want-1)
	}
	return nil
}
