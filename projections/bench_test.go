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
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						// One event per append: a queued invocation, the
						// common case of a request being acknowledged.
						if _, err := l.Append(context.Background(), events[i][0]); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
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
