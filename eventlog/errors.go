package eventlog

import "errors"

var (
	// ErrClosed is returned by operations on a Log after Close.
	ErrClosed = errors.New("event log is closed")

	// ErrLocked means another process holds the file: a running server keeps
	// it locked for writing, so offline commands must wait until it stops.
	ErrLocked = errors.New("event log is held by another process (is the server running?)")

	// ErrCorrupt means stored bytes do not decode, are out of order, or break
	// the hash chain. The message names the first bad seq.
	ErrCorrupt = errors.New("event log is corrupt")

	// ErrInvalid is returned by Append for an event that cannot be stored.
	ErrInvalid = errors.New("invalid event")

	// ErrReadOnly is returned by writes to a Log opened read-only.
	ErrReadOnly = errors.New("event log is open read-only")

	// ErrViewsDiffer is returned by Verify when the stored views are not what
	// replaying the log produces.
	ErrViewsDiffer = errors.New("stored views differ from a rebuild")
)
