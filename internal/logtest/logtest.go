// Package logtest builds event logs for benchmarks and tests: the events
// of a completed invocation as the server writes them, and a log of a
// million of them.
package logtest

import (
	"context"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/oklog/ulid/v2"
)

// Lifecycle returns the three events of one completed invocation of
// function fnID, about 320 bytes each once stored, as the server writes
// them.
func Lifecycle(fnID, invID string) []eventlog.Event {
	exit := 0
	q, err := projections.NewInvocationQueued(fnID, invID, projections.InvocationQueued{
		FunctionName: "hello", FunctionVersion: 1,
		Event: []byte(`{"name":"world","request":{"path":"/orders/12345","items":[1,2,3]},"trace":"abcdef0123456789abcdef0123456789"}`),
	})
	s, serr := projections.NewInvocationStarted(fnID, invID, projections.InvocationStarted{
		Attempt:     1,
		ContainerID: "4f1c0f2ab6d1e5c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b",
		ImageDigest: "sha256:9b1a7c3d5e7f9a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b",
	})
	c, cerr := projections.NewInvocationEnded(fnID, invID, projections.InvocationEnded{
		Attempt: 1, Result: `{"message":"Hello, world!","handled_at":"2026-11-26T12:00:00Z","ok":true}` + "\n",
		Logs: "handling event for world\nfinished in 3 ms\n", ExitCode: &exit, DurationMS: 412,
	})
	if err != nil || serr != nil || cerr != nil {
		panic("logtest: the fixed payloads do not encode")
	}
	return []eventlog.Event{q, s, c}
}

// Register appends the registration of function id, named name.
func Register(l *eventlog.Log, id, name string) error {
	e, err := projections.NewFunctionRegistered(id, projections.FunctionRegistered{
		Spec:      function.Spec{Name: name, Image: name + ":latest", Timeout: 30, MemoryMB: 256},
		CreatedAt: time.Now().UTC(),
	})
	if err == nil {
		_, err = l.Append(context.Background(), e)
	}
	return err
}

// Fill1M appends 1,000,002 events to l: two functions and 333,334
// completed invocations of them, 300 events an append.
func Fill1M(l *eventlog.Log) error {
	for _, fn := range [][2]string{{"fn1", "hello"}, {"fn2", "world"}} {
		if err := Register(l, fn[0], fn[1]); err != nil {
			return err
		}
	}
	const invocations = 333334
	var group []eventlog.Event
	for i := range invocations {
		fn := "fn1"
		if i%2 == 1 {
			fn = "fn2"
		}
		group = append(group, Lifecycle(fn, ulid.Make().String())...)
		if len(group) >= 300 || i == invocations-1 {
			if _, err := l.Append(context.Background(), group...); err != nil {
				return err
			}
			group = group[:0]
		}
	}
	return nil
}
