package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/internal/lambdatest"
	"github.com/minilambda/minilambda/runner/agent"
	"github.com/minilambda/minilambda/runner/docker"
	"github.com/minilambda/minilambda/runner/engine"
)

func TestMain(m *testing.M) { lambdatest.Main(m) }

// TestImage builds the image from this directory's Dockerfile, as its
// comment says, and gives it invocations through the Runtime API.
func TestImage(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildSampleAs(t, cli, ".", "hello-lambda-go", "bootstrap")
	d, err := docker.New(cli, nil)
	if err != nil {
		t.Fatal(err)
	}
	host, err := agent.New(agent.Options{Engine: d, InitDir: lambdatest.InitDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	key, value := dockertest.UniqueLabel(t)
	t.Cleanup(func() { dockertest.AssertNoContainers(t, cli, key, value) })
	ctx := context.Background()
	defer host.Close(ctx)
	h, err := host.StartLambda(ctx, engine.Spec{FunctionID: "hello-lambda-go", Image: img.Tag, Labels: map[string]string{key: value}},
		agent.Function{Name: "hello", Version: "$LATEST", MemoryMB: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
	for i, tc := range []struct{ in, want string }{
		{`{"name":"Ada"}`, `{"message":"Hello, Ada!"}`},
		{`{}`, `{"message":"Hello, World!"}`},
		{`{"name":"Bo"}`, `{"message":"Hello, Bo!"}`},
	} {
		id := "req-" + string(rune('a'+i))
		res, err := h.Do(ctx, id, []byte(tc.in), 10*time.Second, func(string, string) error { return nil })
		if err != nil || string(res.Stdout) != tc.want || res.FunctionError != nil {
			t.Fatalf("%s: %q %+v %v", tc.in, res.Stdout, res.FunctionError, err)
		}
		if !strings.Contains(string(res.Stderr), "hello-lambda-go: greeting") || !strings.Contains(string(res.Stderr), id) {
			t.Errorf("%s: logs %q", tc.in, res.Stderr)
		}
	}
	if res, err := h.Do(ctx, "req-bad", []byte(`"not an object"`), 10*time.Second, func(string, string) error { return nil }); err != nil ||
		res.FunctionError == nil {
		t.Errorf("an event that is not an object: %q %v", res.Stdout, err)
	}
}
