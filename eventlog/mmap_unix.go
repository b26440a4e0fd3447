//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package eventlog

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

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
