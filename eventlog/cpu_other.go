//go:build !linux

package eventlog

import "time"

// threadCPU is -1: this platform cannot tell a thread's CPU time.
func threadCPU() time.Duration { return -1 }
