package main

import (
	"context"
	"encoding/json"
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
// comment says, and sends it events as a hot container.
func TestImage(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildSample(t, cli, ".", "hello-hot-go")
	d, err := docker.New(cli, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, value := dockertest.UniqueLabel(t)
	t.Cleanup(func() { dockertest.AssertNoContainers(t, cli, key, value) })
	ctx := context.Background()
	host, err := agent.New(agent.Options{Engine: d, InitDir: lambdatest.InitDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close(ctx)
	h, err := host.StartHot(ctx, engine.Spec{FunctionID: "hello-hot-go", Image: img.Tag, Labels: map[string]string{key: value}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
	for _, tc := range []struct{ in, want string }{
		{`{"name":"Ada"}`, `"message":"Hello, Ada!"`},
		{`{}`, `"message":"Hello, World!"`},
		{`"not an object"`, `"error":`},
		{`{"name":"Bo"}`, `"message":"Hello, Bo!"`},
	} {
		hr, err := h.Do(ctx, "", []byte(tc.in), 10*time.Second, noStart)
		if err != nil || !strings.Contains(string(hr.Stdout), tc.want) || !json.Valid(hr.Stdout) {
			t.Fatalf("%s: %q %v", tc.in, hr.Stdout, err)
		}
		if !strings.Contains(string(hr.Stderr), "handled one event") {
			t.Errorf("%s: logs %q", tc.in, hr.Stderr)
		}
	}
}

// noStart is an engine.OnStart that records nothing.
func noStart(string, string) error { return nil }
