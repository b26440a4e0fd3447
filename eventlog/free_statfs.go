//go:build linux || darwin || freebsd

package eventlog

import "syscall"

// freeBytes is the room left on the file system that holds dir, for an
// unprivileged writer.
func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
