//go:build !(linux || darwin || freebsd)

package eventlog

import "errors"

// freeBytes is not known here: Writable tries the file instead.
func freeBytes(string) (uint64, error) { return 0, errors.ErrUnsupported }
