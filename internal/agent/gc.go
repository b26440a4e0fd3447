package agent

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
// The soft memory limit brings back frequent collection before a large
// live heap grows fivefold.
const (
	ServeGCPercent   = 400
	ServeMemoryLimit = 2 << 30
)

// TuneGC sets the process's collector for serving invocations, unless the
// GOGC or GOMEMLIMIT environment variables set it. restore puts back what
// was set before.
func TuneGC() (restore func()) {
	percent, limit := -2, int64(-1)
	if os.Getenv("GOGC") == "" {
		percent = debug.SetGCPercent(ServeGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		limit = debug.SetMemoryLimit(ServeMemoryLimit)
	}
	return func() {
		if percent != -2 {
			debug.SetGCPercent(percent)
		}
		if limit >= 0 {
			debug.SetMemoryLimit(limit)
		}
	}
}
