package main

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
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
// time.
//
// Large events are another matter: with GOGC=400 a heap of live events
// may grow fivefold before a collection. The soft memory limit of serve,
// twice its memory budget, brings collection back long before that; a
// replay's live heap is a few chunks of events whatever the log holds.
const (
	gcPercent         = 400
	replayMemoryLimit = 2 << 30
)

// tuneGC sets the process's collector for a command that replays the log
// (audit, migrate); see setGC.
func tuneGC() (restore func()) { return setGC(replayMemoryLimit) }

// tuneServeGC sets the collector for serve, whose heap holds at most about
// its memory budget of events and outputs; see setGC.
func tuneServeGC(budget int64) (restore func()) { return setGC(2 * budget) }

// setGC sets GOGC=400 and a soft memory limit, unless the GOGC or
// GOMEMLIMIT environment variable is set: then the operator's settings
// stand as they are (GOGC=off alone means no collection at all). restore
// puts back what was set before.
func setGC(memoryLimit int64) (restore func()) {
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

// Quiet is less than quietAllocs allocated in a returnEvery; then heap
// the last collection found dead, past returnSlack, goes back to the
// operating system.
const (
	returnEvery = 5 * time.Second
	quietAllocs = 32 << 20
	returnSlack = 64 << 20
)

// returnMemory gives the operating system back what a burst of large
// events left in the server's memory, once it is quiet, until ctx ends:
// the heap that the last collection found dead, and the event log's pages
// that reading the events mapped in (dropMapped). Without it the runtime
// collects at the latest every two minutes and returns free memory only
// gradually, and mapped pages stay counted in the resident memory, so a
// server's RSS stayed at its peak long after the load.
func returnMemory(ctx context.Context, dropMapped func() error) {
	samples := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	tick := time.NewTicker(returnEvery)
	defer tick.Stop()
	var allocated uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		metrics.Read(samples)
		allocs, live := samples[0].Value.Uint64(), samples[1].Value.Uint64()
		held := samples[2].Value.Uint64() + samples[3].Value.Uint64()
		quiet := allocs-allocated < quietAllocs
		allocated = allocs
		if quiet && held > live+returnSlack {
			debug.FreeOSMemory()
		}
		if quiet && mappedFile() > returnSlack {
			_ = dropMapped()
		}
	}
}

// mappedFile is the process's resident memory that maps files, as Linux
// reports it; 0 where it does not.
func mappedFile() uint64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, _ := strconv.ParseUint(strings.Fields(rest)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}
