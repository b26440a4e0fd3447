package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
)

// TestMemoryBudget gives the server room for the outputs of one invocation
// at a time: a second sync call is refused at once, and queued ones wait
// their turn, none of them failing.
func TestMemoryBudget(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-runner-budget")
	// Each invocation reserves room for 64 KiB of stdout and of stderr.
	f := newService(t, cli, img.Tag, runner.Options{OutputLimit: 64 << 10, MemoryBudget: 200 << 10})
	fn := f.register(function.Spec{Name: "fn"})

	done := make(chan error, 1)
	go func() {
		_, err := f.svc.Invoke(context.Background(), "fn", function.Request{Event: json.RawMessage(`{"sleep_ms": 1500}`)})
		done <- err
	}()
	f.waitRunning(fn.ID)
	if _, err := f.svc.Invoke(context.Background(), "fn", function.Request{}); !errors.Is(err, function.ErrBusy) {
		t.Errorf("a second sync call past the budget: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	var ids []string
	for range 3 {
		ids = append(ids, f.enqueue("fn", map[string]any{"sleep_ms": 300}, "").InvocationID)
	}
	var prev projections.Invocation
	for i, id := range ids {
		inv := f.settle(id, time.Minute)
		if inv.Status != "COMPLETED" || inv.Attempts != 1 {
			t.Fatalf("queued invocation %d: %+v", i, inv)
		}
		if i > 0 && inv.StartedAt.Before(*prev.CompletedAt) {
			t.Errorf("queued invocation %d started before %d ended: the budget held two", i, i-1)
		}
		prev = inv
	}
	// The whole budget is free again, once the last worker has returned
	// its room, just after its record landed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f.svc.Reserve(200 << 10)
		if err == nil {
			f.svc.Release(200 << 10)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the budget is still in use after the work: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
