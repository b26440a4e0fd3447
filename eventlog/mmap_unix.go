//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package eventlog

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
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

// DropMapped takes the log's file pages out of the process's resident
// memory: bbolt reads through a shared, read-only mapping of the file, and
// every page read stays mapped, counted in the server's RSS, after a burst
// of large events. The kernel keeps them in its page cache, and a later
// read maps them back. It runs inside a read transaction, which keeps
// bbolt from remapping the file meanwhile.
func (l *Log) DropMapped() error {
	return guard("dropping mapped pages", func() error {
		return l.db.View(func(tx *bolt.Tx) error {
			size := int(tx.Size())
			if size == 0 {
				return nil
			}
			_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, l.db.Info().Data, uintptr(size), syscall.MADV_DONTNEED)
			if errno != 0 {
				return errno
			}
			return nil
		})
	})
}
