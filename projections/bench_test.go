package projections_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/internal/logtest"
	"github.com/minilambda/minilambda/projections"
	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkAppend measures durable appends per second: every commit is
// fsynced before its appends return, and the real projector runs in the
// same transaction.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l, err := eventlog.Open(filepath.Join(b.TempDir(), "events.db"), eventlog.Options{Projector: projections.Projector{}})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			mustRegister(b, l, "fn1", "hello")
			events := make([][]eventlog.Event, b.N)
			for i := range events {
				events[i] = logtest.Lifecycle("fn1", ulid.Make().String())
			}
			b.ResetTimer()
			start := time.Now()
			appendFrom(b, writers, func(i int) error {
				// One event per append: a queued invocation, the common
				// case of a request being acknowledged.
				_, err := l.Append(context.Background(), events[i][0])
				return err
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

var (
	fixtureOnce sync.Once
	fixturePath string
	fixtureErr  error
)

// fixture1M builds, once per test binary, a log of 1,000,002 events:
// 333,334 completed invocations of two functions.
func fixture1M(b *testing.B) string {
	fixtureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "minilambda-bench-")
		if err != nil {
			fixtureErr = err
			return
		}
		fixturePath = filepath.Join(dir, "events.db")
		l, err := eventlog.Open(fixturePath, eventlog.Options{Projector: projections.Projector{}})
		if err != nil {
			fixtureErr = err
			return
		}
		defer l.Close()
		fixtureErr = logtest.Fill1M(l)
	})
	if fixtureErr != nil {
		b.Fatal(fixtureErr)
	}
	return fixturePath
}

func reportSize(b *testing.B, path string, events uint64) {
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(fi.Size())/float64(events), "file-bytes/event")
}

// BenchmarkRebuild1M measures dropping the views and rebuilding them from
// a million events.
func BenchmarkRebuild1M(b *testing.B) {
	runAsTheBinary(b)
	path := fixture1M(b)
	l, err := eventlog.Open(path, eventlog.Options{Projector: projections.Projector{}, NoSync: os.Getenv("NOSYNC") != ""})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	head, _ := l.Head()
	b.ResetTimer()
	for range b.N {
		if err := l.Rebuild(context.Background(), projections.Projector{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportSize(b, path, head)
	b.ReportMetric(float64(head), "events")
}

// BenchmarkAudit1M measures what `minilambda audit` does on a million
// events: chain, decoding, and a rebuild compared with the stored views.
func BenchmarkAudit1M(b *testing.B) {
	runAsTheBinary(b)
	path := fixture1M(b)
	l, err := eventlog.Open(path, eventlog.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.ResetTimer()
	var sum eventlog.Summary
	for range b.N {
		if sum, err = l.Verify(context.Background(), projections.Projector{}, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(sum.Events), "events")
}

// runAsTheBinary sets the garbage collector as the binary's serve, audit
// and migrate commands do (tuneGC in main.go), so that a replay is
// measured as they run it.
func runAsTheBinary(b *testing.B) {
	percent := debug.SetGCPercent(400)
	limit := debug.SetMemoryLimit(2 << 30)
	b.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixturePath != "" {
		os.RemoveAll(filepath.Dir(fixturePath))
	}
	os.Exit(code)
}

// BenchmarkBaselineBoltUpdate is the yardstick for BenchmarkAppend on the
// same disk in the same run: a bare bbolt Update with one Put of a
// 320-byte value per transaction, fsynced, no log, no views. A single
// appender cannot beat it, since every append waits for its own fsync.
func BenchmarkBaselineBoltUpdate(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "bolt.db"), 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("e"))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	val := make([]byte, 320)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if err := db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("e")).Put(binary.BigEndian.AppendUint64(nil, uint64(i)), val)
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

func mustRegister(b *testing.B, l *eventlog.Log, id, name string) {
	if err := logtest.Register(l, id, name); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkInvocations appends what the server appends for warm
// invocations from 16 clients at once: each invocation's queued and started
// events in one append, then its end in another, each waiting for its
// fsynced commit, the real projector in the transaction. It reports
// invocations/s, the log writer's commits/s, events and pages written per
// commit, and the process's CPU per invocation.
func BenchmarkInvocations(b *testing.B) {
	const clients = 16
	var commits, events, pages atomic.Int64
	var commitCPU, commitTime atomic.Int64
	l, err := eventlog.Open(filepath.Join(b.TempDir(), "events.db"), eventlog.Options{
		Projector: projections.Projector{},
		OnCommit: func(c eventlog.CommitStats) {
			commits.Add(1)
			events.Add(int64(c.Events))
			pages.Add(int64(c.Pages))
			commitCPU.Add(int64(c.CPU))
			commitTime.Add(int64(c.Duration))
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	mustRegister(b, l, "fn1", "hello")
	// Some history, so that the views' trees have the depth of a server
	// that has run for a while.
	var group []eventlog.Event
	for i := range 30000 {
		group = append(group, logtest.Lifecycle("fn1", ulid.Make().String())...)
		if len(group) >= 600 || i == 29999 {
			if _, err := l.Append(context.Background(), group...); err != nil {
				b.Fatal(err)
			}
			group = group[:0]
		}
	}
	lifecycles := make([][]eventlog.Event, b.N)
	for i := range lifecycles {
		lifecycles[i] = logtest.Lifecycle("fn1", ulid.Make().String())
	}
	commits.Store(0)
	events.Store(0)
	pages.Store(0)
	commitCPU.Store(0)
	commitTime.Store(0)
	cpu0 := processCPU(b)
	b.ResetTimer()
	start := time.Now()
	appendFrom(b, clients, func(i int) error {
		ev := lifecycles[i]
		if _, err := l.Append(context.Background(), ev[0], ev[1]); err != nil {
			return err
		}
		_, err := l.Append(context.Background(), ev[2])
		return err
	})
	wall := time.Since(start)
	b.StopTimer()
	cpu := processCPU(b) - cpu0
	n := float64(commits.Load())
	b.ReportMetric(float64(b.N)/wall.Seconds(), "inv/s")
	b.ReportMetric(n/wall.Seconds(), "commits/s")
	b.ReportMetric(float64(events.Load())/n, "events/commit")
	b.ReportMetric(float64(pages.Load())/n, "pages/commit")
	b.ReportMetric(float64(commitTime.Load())/n/1e3, "µs/commit")
	b.ReportMetric(float64(commitCPU.Load())/n/1e3, "cpu-µs/commit")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/inv")
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// appendFrom calls do for 0 to b.N-1 from clients goroutines at once, each
// taking the next i, until all are done or one fails.
func appendFrom(b *testing.B, clients int, do func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < b.N; i = int(next.Add(1) - 1) {
				if err := do(i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
