//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package boltcheck

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockShared takes a shared flock on f, as bbolt does for a read-only
// open, waiting at most timeout.
func lockShared(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if time.Now().After(deadline) {
			return ErrLocked
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mapRead maps size bytes of f read-only.
func mapRead(f *os.File, size int64) ([]byte, func(), error) {
	if int64(int(size)) != size {
		return nil, nil, fmt.Errorf("a file of %d bytes is too large to map", size)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("map: %w", err)
	}
	return b, func() { syscall.Munmap(b) }, nil
}
