package eventlog_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/internal/logtest"
	"github.com/minilambda/minilambda/projections"
)

// BenchmarkOpen1M measures what serve's start costs on a log of 1,000,002
// events: Open for writing with the real projector, which checks the
// file's structure first, then Close. Set MINILAMBDA_BENCH_1M to a path to
// keep the fixture between runs (it is built there when missing).
func BenchmarkOpen1M(b *testing.B) {
	path := os.Getenv("MINILAMBDA_BENCH_1M")
	if path == "" {
		path = filepath.Join(b.TempDir(), "events.db")
	}
	if _, err := os.Stat(path); err != nil {
		build1M(b, path)
	}
	b.ResetTimer()
	for range b.N {
		l, err := eventlog.Open(path, eventlog.Options{Projector: projections.Projector{}})
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// build1M writes the benchmarks' log of 1,000,002 events.
func build1M(b *testing.B, path string) {
	l, err := eventlog.Open(path, eventlog.Options{Projector: projections.Projector{}, NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	if err := logtest.Fill1M(l); err != nil {
		b.Fatal(err)
	}
}
