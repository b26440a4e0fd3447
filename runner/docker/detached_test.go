package docker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/runner/engine"
)

// detachedProbe checks, from inside the container, what a detached start
// promises, and says what it found in its exit code: 0 when all holds.
const detachedProbe = `package main

import (
	"os"
	"strings"
)

func main() {
	want := "/probe wrapped -- /probe entry cmd"
	if got := strings.Join(os.Args, " "); got != want {
		os.Exit(10)
	}
	b, err := os.ReadFile("/mnt/in/note")
	if err != nil || string(b) != "from the host" {
		os.Exit(11)
	}
	if err := os.WriteFile("/mnt/in/new", []byte("x"), 0o644); err == nil {
		os.Exit(12)
	}
	if os.Getenv("SPEC_ENV") != "set" {
		os.Exit(13)
	}
	if len(os.Getenv("EXIT_WITH")) > 0 {
		os.Exit(42)
	}
}
`

// TestStartDetached starts containers with nothing attached: the
// image's entrypoint and command run after the wrapper, mounts are
// read-only, the exit is seen and its state read.
func TestStartDetached(t *testing.T) {
	d, cli, spec := setup(t)
	probe := dockertest.GoSourceBinary(t, detachedProbe)
	img := dockertest.BuildImage(t, cli, "minilambda-runner-detached",
		map[string][]byte{"Dockerfile": []byte("FROM scratch\nCOPY probe /probe\nENTRYPOINT [\"/probe\", \"entry\"]\nCMD [\"cmd\"]\n")},
		map[string][]byte{"probe": probe})
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "note"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec.Image = img.Tag
	spec.Mounts = []engine.Mount{{Source: host, Target: "/mnt/in"}}
	spec.Wrap = []string{"/probe", "wrapped", "--"}
	ctx := context.Background()
	for _, tc := range []struct {
		env  map[string]string
		code int
	}{{map[string]string{"SPEC_ENV": "set"}, 0}, {map[string]string{"SPEC_ENV": "set", "EXIT_WITH": "1"}, 42}} {
		spec.Env = tc.env
		c, err := d.StartDetached(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.Exited():
		case <-time.After(30 * time.Second):
			t.Fatal("the probe never exited")
		}
		if code, oom := c.ExitState(ctx); code != tc.code || oom {
			t.Errorf("probe exit %d (oom %v), want %d", code, oom, tc.code)
		}
		if c.ImageDigest() != img.ID {
			t.Errorf("image %s, want %s", c.ImageDigest(), img.ID)
		}
		c.Close(ctx)
		c.Close(ctx)
	}

	// Bad mounts and wrappers are refused before the engine is asked.
	for _, bad := range []engine.Spec{
		{Image: img.Tag, Mounts: []engine.Mount{{Source: "relative", Target: "/x"}}},
		{Image: img.Tag, Mounts: []engine.Mount{{Source: host, Target: "/"}}},
		{Image: img.Tag, Mounts: []engine.Mount{{Source: host, Target: "/a/../b"}}},
		{Image: img.Tag, Wrap: []string{"init"}},
	} {
		if _, err := d.StartDetached(ctx, bad); !errors.Is(err, engine.ErrInvalidSpec) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
