package eventlog_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/oklog/ulid/v2"
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

// build1M writes projections' benchmark fixture: two functions and
// 333,334 completed invocations, appended 300 events at a time.
func build1M(b *testing.B, path string) {
	l, err := eventlog.Open(path, eventlog.Options{Projector: projections.Projector{}, NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for _, fn := range []string{"fn1", "fn2"} {
		e, err := projections.NewFunctionRegistered(fn, projections.FunctionRegistered{
			Spec:      function.Spec{Name: "f-" + fn, Image: "f-" + fn + ":latest", Timeout: 30, MemoryMB: 256},
			CreatedAt: time.Now().UTC(),
		})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.Append(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	exit := 0
	var group []eventlog.Event
	const invocations = 333334
	for i := range invocations {
		fn, inv := "fn1", ulid.Make().String()
		if i%2 == 1 {
			fn = "fn2"
		}
		q, err := projections.NewInvocationQueued(fn, inv, projections.InvocationQueued{
			FunctionName: "hello", FunctionVersion: 1,
			Event: []byte(`{"name":"world","request":{"path":"/orders/12345","items":[1,2,3]},"trace":"abcdef0123456789abcdef0123456789"}`),
		})
		if err != nil {
			b.Fatal(err)
		}
		s, _ := projections.NewInvocationStarted(fn, inv, projections.InvocationStarted{
			Attempt:     1,
			ContainerID: "4f1c0f2ab6d1e5c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b",
			ImageDigest: "sha256:9b1a7c3d5e7f9a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b",
		})
		c, _ := projections.NewInvocationEnded(fn, inv, projections.InvocationEnded{
			Attempt: 1, Result: `{"message":"Hello, world!","handled_at":"2026-11-26T12:00:00Z","ok":true}` + "\n",
			Logs: "handling event for world\nfinished in 3 ms\n", ExitCode: &exit, DurationMS: 412,
		})
		group = append(group, q, s, c)
		if len(group) >= 300 || i == invocations-1 {
			if _, err := l.Append(ctx, group...); err != nil {
				b.Fatal(err)
			}
			group = group[:0]
		}
	}
}
