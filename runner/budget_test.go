package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
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
	var runs []projections.Invocation
	for i, id := range ids {
		inv := f.settle(id, time.Minute)
		if inv.Status != "COMPLETED" || inv.Attempts != 1 {
			t.Fatalf("queued invocation %d: %+v", i, inv)
		}
		runs = append(runs, inv)
	}
	// In the order they ran, which need not be the order they were queued
	// in (one put off for the budget may wake after another), each starts
	// after the one before it ended.
	slices.SortFunc(runs, func(a, b projections.Invocation) int { return a.StartedAt.Compare(*b.StartedAt) })
	for i := 1; i < len(runs); i++ {
		if runs[i].StartedAt.Before(*runs[i-1].CompletedAt) {
			t.Errorf("%s started before %s ended: the budget held two", runs[i].InvocationID, runs[i-1].InvocationID)
		}
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
