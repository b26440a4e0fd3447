package eventlog

import "errors"

var (
	// ErrClosed is returned by operations on a Log after Close.
	ErrClosed = errors.New("event log is closed")

	// ErrLocked means another process holds the file: a running server keeps
	// it locked for writing, so offline commands must wait until it stops.
	ErrLocked = errors.New("event log is held by another process (is the server running?)")

	// ErrCorrupt means the file is damaged or is not an event log: it is
	// empty, it is not a bbolt file, its pages do not hold together, or
	// stored bytes do not decode, are out of order, or break the hash chain.
	// The message names the first bad page or seq where it is known. A
	// panic or memory fault inside bbolt is returned as ErrCorrupt too.
	ErrCorrupt = errors.New("event log is corrupt")

	// ErrInvalid is returned by Append for an event that cannot be stored.
	ErrInvalid = errors.New("invalid event")

	// ErrUnwritable means the file refused a commit: the disk is full, or
	// an I/O error. Nothing of the commit was written; the same append
	// succeeds once the file takes writes again (see Log.Writable).
	ErrUnwritable = errors.New("the event log cannot be written")

	// ErrReadOnly is returned by writes to a Log opened read-only.
	ErrReadOnly = errors.New("event log is open read-only")

	// ErrViewsDiffer is returned by Verify when the stored views are not what
	// replaying the log produces.
	ErrViewsDiffer = errors.New("stored views differ from a rebuild")
)
