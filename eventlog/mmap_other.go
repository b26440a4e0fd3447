//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package eventlog

// DropMapped does nothing here: the file is not mapped the same way.
func (l *Log) DropMapped() error { return nil }
