package runner

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	dockercontainer "github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/control"
	"github.com/minilambda/minilambda/runner/docker"
)

// TestSpareKeptOutOfALostAttempt takes a function's prestarted spare for
// an attempt whose queued event cannot be appended: the spare must not be
// left running, and the function still ends up with spares.
func TestSpareKeptOutOfALostAttempt(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-runner-lost")
	log, err := eventlog.Open(filepath.Join(t.TempDir(), "events.db"), eventlog.Options{Projector: projections.Projector{}})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	driver, err := docker.New(cli, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, instance := dockertest.UniqueLabel(t)
	s, err := New(Options{Log: log, Engine: driver, Instance: instance})
	if err != nil {
		t.Fatal(err)
	}
	defer dockertest.AssertNoContainers(t, cli, LabelInstance, instance)
	defer s.Wait()
	ctx := context.Background()
	ctl, err := control.New(control.Options{Log: log, Engine: driver, Runner: s, Views: s.Views()})
	if err != nil {
		t.Fatal(err)
	}
	f, err := ctl.Register(ctx, function.Spec{Name: "fn", Image: img.Tag})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Invoke(ctx, "fn", function.Request{}); err != nil {
		t.Fatal(err)
	}
	containers := func() int {
		s.spares.wg.Wait()
		s.Settle()
		list, err := cli.ContainerList(ctx, dockercontainer.ListOptions{All: true, Filters: filters.NewArgs(
			filters.Arg("label", LabelInstance+"="+instance), filters.Arg("label", docker.LabelFunction+"="+f.ID))})
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}
	if n := containers(); n != 1 {
		t.Fatalf("%d containers after the first invocation, want its spare", n)
	}
	// An event the log refuses: the attempt takes the spare, then cannot
	// queue the invocation.
	bad := eventlog.Event{FunctionID: f.ID, InvocationID: "lost", Data: json.RawMessage(`{}`)}
	a := &attempt{f: f, id: "lost", n: 1, event: json.RawMessage(`{}`), timeout: time.Second, queued: &bad}
	if events, _, err := s.run(ctx, a); err == nil || len(events) != 0 {
		t.Fatalf("an attempt whose queued event is refused: %v, %d events", err, len(events))
	}
	// The spare taken is gone; the containers left are the spares the
	// function holds (more than one when its arrivals ask for more).
	n := containers()
	s.spares.mu.Lock()
	held := len(s.spares.byFn[keyOf(f)].ready)
	s.spares.mu.Unlock()
	if n != held || held < 1 {
		t.Errorf("%d containers of the function after the lost attempt, %d spares held; want them equal and at least one", n, held)
	}
}
