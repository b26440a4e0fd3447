package main

import (
	"os"
	"runtime/debug"
)

// The garbage collector's defaults suit a small heap poorly under a
// steady stream of invocations: the heap of a serving process is about ten
// megabytes while every invocation makes garbage, so with GOGC=100 it
// collected twenty times a second, and the collections took CPU from the
// log's writer and from the engine on the same cores. At GOGC=400, hot
// throughput at 16 clients rose by a fifth (BenchmarkWarm, five paired
// runs: medians 2,392/s against 1,985/s) for 12 MB more resident memory.
// A long replay of the log (a rebuild of the views at start-up, audit,
// migrate) makes garbage at a steady rate while its live heap stays at
// about two chunks of events: collecting less often takes a fifth off its
// time. The soft memory limit brings back frequent collection before a
// large live heap grows fivefold.
const (
	gcPercent   = 400
	memoryLimit = 2 << 30
)

// tuneGC sets the process's collector for the commands that serve or
// replay the log, unless the GOGC or GOMEMLIMIT environment variable is
// set: then the operator's settings stand as they are (GOGC=off alone means
// no collection at all). restore puts back what was set before.
func tuneGC() (restore func()) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	percent := debug.SetGCPercent(gcPercent)
	limit := debug.SetMemoryLimit(memoryLimit)
	return func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}
}
