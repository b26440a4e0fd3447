package runner_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
)

// TestHostileFunctions runs functions that attack their limits against the
// real engine: each ends with a record that says what happened, its
// container is removed, and the server goes on.
func TestHostileFunctions(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-hostile-fn")
	f := newService(t, cli, img.Tag, runner.Options{OutputLimit: 64 << 10})
	f.register(function.Spec{Name: "fn", MemoryMB: 32, Timeout: 20})
	f.register(function.Spec{Name: "ro", ReadOnly: true})
	// Memory to spare, so that what stops a fork bomb is the pids limit.
	f.register(function.Spec{Name: "bomb", MemoryMB: 1024, Timeout: 20})
	invoke := func(ref string, event any) projections.Invocation {
		t.Helper()
		b, _ := json.Marshal(event)
		inv, err := f.svc.Invoke(context.Background(), ref, function.Request{Event: b})
		if err != nil {
			t.Fatal(err)
		}
		return inv
	}

	t.Run("out of memory", func(t *testing.T) {
		inv := invoke("fn", map[string]any{"alloc_mb": 256})
		if inv.Status != "FAILED" || inv.ErrorType != function.ErrorOutOfMemory {
			t.Fatalf("record %+v", inv)
		}
	})
	t.Run("output flood", func(t *testing.T) {
		start := time.Now()
		inv := invoke("fn", map[string]any{"flood_bytes": 64 << 20})
		if inv.Status != "FAILED" || inv.ErrorType != function.ErrorOutputLimit || !inv.Truncated ||
			len(inv.Result) > 64<<10 || len(inv.Logs) > 64<<10 {
			t.Fatalf("record: status %s type %s truncated %v, %d bytes of result, %d of logs",
				inv.Status, inv.ErrorType, inv.Truncated, len(inv.Result), len(inv.Logs))
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("flood took %v to stop", d)
		}
	})
	t.Run("fork bomb", func(t *testing.T) {
		inv := invoke("bomb", map[string]any{"fork_bomb": true})
		// The pids limit stops it: either the function sees a spawn fail,
		// or the Go runtime cannot start a thread and dies. Either way it
		// ends and says so, well before the timeout.
		if inv.Status == "" || inv.ErrorType == function.ErrorTimeout {
			t.Fatalf("record %+v", inv)
		}
		if !strings.Contains(inv.Logs, "spawn limited") && !strings.Contains(inv.Logs, "resource temporarily unavailable") &&
			!strings.Contains(inv.Logs, "failed to create new OS thread") {
			t.Fatalf("nothing in the logs shows the limit: %+v", inv)
		}
	})
	t.Run("read-only root", func(t *testing.T) {
		if inv := invoke("ro", map[string]any{"write_file": "/evil"}); inv.Status != "FAILED" || !strings.Contains(inv.Logs, "read-only file system") {
			t.Fatalf("write to / on a read-only root: %+v", inv)
		}
		if inv := invoke("ro", map[string]any{"write_file": "/tmp/scratch"}); inv.Status != "COMPLETED" {
			t.Fatalf("write to /tmp on a read-only root: %+v", inv)
		}
	})
	t.Run("still serving", func(t *testing.T) {
		if inv := invoke("fn", map[string]any{"name": "after"}); inv.Status != "COMPLETED" {
			t.Fatalf("record %+v", inv)
		}
	})
}
