//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package boltcheck

import (
	"io"
	"os"
	"time"
)

// lockShared does nothing here: the check reads a copy of the file, and
// bbolt takes its own lock right after.
func lockShared(f *os.File, timeout time.Duration) error { return nil }

// mapRead reads the whole file: no mmap here.
func mapRead(f *os.File, size int64) ([]byte, func(), error) {
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, nil, err
	}
	return b, func() {}, nil
}
