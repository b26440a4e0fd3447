package docker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/runner/engine"
)

func TestHot(t *testing.T) {
	d, cli, spec := setup(t)
	img := dockertest.BuildGoImage(t, cli, "../../testdata/hot", "minilambda-runner-hot")
	spec.Image = img.Tag
	ctx := context.Background()
	start := func() engine.Hot {
		h, err := d.StartHot(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close(ctx) })
		return h
	}
	type answer struct {
		Message string
		Count   int
	}
	do := func(h engine.Hot, event string) (answer, engine.Result, error) {
		res, err := h.Do(ctx, "", []byte(event), 5*time.Second, noStart)
		var a answer
		if err == nil {
			if jerr := json.Unmarshal(res.Stdout, &a); jerr != nil {
				t.Fatalf("result %q: %v", res.Stdout, jerr)
			}
		}
		return a, res, err
	}

	h := start()
	if !strings.HasPrefix(h.ImageDigest(), "sha256:") || h.ID() == "" {
		t.Fatalf("hot container %q %q", h.ID(), h.ImageDigest())
	}
	for i := 1; i <= 3; i++ {
		a, res, err := do(h, `{"name": "n`+string(rune('0'+i))+`"}`)
		if err != nil || a.Count != i || a.Message != "Hello, n"+string(rune('0'+i))+"!" {
			t.Fatalf("event %d: %+v %v", i, a, err)
		}
		if string(res.Stderr) != "handling \"n"+string(rune('0'+i))+"\"\n" {
			t.Errorf("event %d logs %q", i, res.Stderr)
		}
	}
	if _, err := h.Do(ctx, "", []byte("{\n}"), time.Second, noStart); !errors.Is(err, engine.ErrInvalidSpec) {
		t.Errorf("multi-line event: %v", err)
	}

	t.Run("crash", func(t *testing.T) {
		h := start()
		_, res, err := do(h, `{"crash": true}`)
		if !errors.Is(err, engine.ErrHotBroken) || res.ExitCode != 3 || res.ErrorType() != "function_error" {
			t.Fatalf("crash: %v %+v", err, res)
		}
		if _, _, err := do(h, `{}`); !errors.Is(err, engine.ErrHotBroken) {
			t.Fatalf("after a crash: %v", err)
		}
	})
	t.Run("hang", func(t *testing.T) {
		h := start()
		begin := time.Now()
		res, err := h.Do(ctx, "", []byte(`{"hang_ms": 60000}`), time.Second, noStart)
		if !errors.Is(err, engine.ErrHotBroken) || !res.TimedOut || res.ErrorType() != "timeout" {
			t.Fatalf("hang: %v %+v", err, res)
		}
		if time.Since(begin) > 3*time.Second {
			t.Errorf("hang answered after %v", time.Since(begin))
		}
	})
	t.Run("answers twice", func(t *testing.T) {
		h := start()
		if _, _, err := do(h, `{"twice": true}`); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if _, _, err := do(h, `{}`); !errors.Is(err, engine.ErrHotBroken) {
			t.Fatalf("after an extra line: %v", err)
		}
	})
}

func TestPrestart(t *testing.T) {
	d, cli, spec := setup(t)
	img := dockertest.BuildGoImage(t, cli, "testdata/echo", "minilambda-runner-prestart")
	spec.Image = img.Tag
	ctx := context.Background()
	p, err := d.Prestart(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	var started string
	res, err := p.Run(ctx, []byte(`{"name": "early"}`), 0, func(id, digest string) error {
		started = id
		return nil
	})
	if err != nil || res.ExitCode != 0 || !strings.Contains(string(res.Stdout), "early") || started != res.ContainerID || res.ImageDigest != img.ID {
		t.Fatalf("prestarted run: %v %+v (started %q)", err, res, started)
	}
	if _, err := p.Run(ctx, nil, 0, nil); err == nil {
		t.Error("a prepared container ran a second invocation")
	}
	// One that is never used is removed by Discard.
	q, err := d.Prestart(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	q.Discard(ctx)
}
