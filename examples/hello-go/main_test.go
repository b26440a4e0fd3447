package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/internal/lambdatest"
	"github.com/minilambda/minilambda/runner/agent"
	"github.com/minilambda/minilambda/runner/docker"
	"github.com/minilambda/minilambda/runner/engine"
)

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		fails    bool
	}{
		{in: `{"name": "Ada"}`, want: "Hello, Ada!"},
		{in: `{}`, want: "Hello, World!"},
		{in: ``, want: "Hello, World!"},
		{in: `not json`, fails: true},
	} {
		var stdout, stderr bytes.Buffer
		err := run(strings.NewReader(tc.in), &stdout, &stderr)
		if tc.fails {
			if err == nil {
				t.Errorf("%q: no error", tc.in)
			}
			continue
		}
		var res Result
		if err != nil || json.Unmarshal(stdout.Bytes(), &res) != nil || res.Message != tc.want {
			t.Errorf("%q: stdout %q, err %v; want message %q", tc.in, stdout.String(), err, tc.want)
		}
		if stderr.Len() == 0 {
			t.Errorf("%q: nothing logged", tc.in)
		}
	}
}

func TestMain(m *testing.M) { lambdatest.Main(m) }

// TestImage builds the image from this directory's Dockerfile, as the
// README says, and invokes it through the Docker driver.
func TestImage(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildSample(t, cli, ".", "hello-go")

	d, err := docker.New(cli, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, value := dockertest.UniqueLabel(t)
	t.Cleanup(func() { dockertest.AssertNoContainers(t, cli, key, value) })
	host, err := agent.New(agent.Options{Engine: d, InitDir: lambdatest.InitDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close(context.Background())
	res, err := host.Run(context.Background(), engine.Spec{
		Image:  img.Tag,
		Labels: map[string]string{key: value},
	}, []byte(`{"name": "Ada"}`), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Stdout); res.ExitCode != 0 || got != "{\"message\":\"Hello, Ada!\"}\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", res.ExitCode, got, res.Stderr)
	}
}
