package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/runner/agent"
	"github.com/minilambda/minilambda/runner/engine"
)

// startHot starts a hot container of spec on the real engine, closed at
// the end of the test, and checked removed then.
func startHot(t *testing.T, h *agent.Host, cli *client.Client, spec engine.Spec) engine.Hot {
	t.Helper()
	c, err := h.StartHot(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close(context.Background())
		assertRemoved(t, cli, c.ID())
	})
	return c
}

func TestHot(t *testing.T) {
	h, rec, cli, spec := dockerHost(t)
	img := dockertest.BuildGoImage(t, cli, "../../testdata/hot", "minilambda-runner-hot")
	spec.Image = img.Tag
	spec.InvocationID = ""
	ctx := context.Background()
	type answer struct {
		Message string
		Count   int
	}
	do := func(c engine.Hot, event string) (answer, engine.Result, error) {
		res, err := c.Do(ctx, "", []byte(event), 5*time.Second, noStart)
		var a answer
		if err == nil {
			if jerr := json.Unmarshal(res.Stdout, &a); jerr != nil {
				t.Fatalf("result %q: %v", res.Stdout, jerr)
			}
		}
		return a, res, err
	}

	c := startHot(t, h, cli, spec)
	if c.ImageDigest() != img.ID || c.ID() == "" {
		t.Fatalf("hot container %q %q; want the image's ID %q", c.ID(), c.ImageDigest(), img.ID)
	}
	for i := 1; i <= 3; i++ {
		var starts []string
		onStart := func(id, digest string) error {
			starts = append(starts, id+" "+digest)
			return nil
		}
		name := fmt.Sprintf("n%d", i)
		res, err := c.Do(ctx, "", []byte(`{"name": "`+name+`"}`), 5*time.Second, onStart)
		var a answer
		if err == nil {
			err = json.Unmarshal(res.Stdout, &a)
		}
		if err != nil || a.Count != i || a.Message != "Hello, "+name+"!" || !bytes.HasSuffix(res.Stdout, []byte("}\n")) {
			t.Fatalf("event %d: %q %v", i, res.Stdout, err)
		}
		if string(res.Stderr) != "handling \""+name+"\"\n" || res.StderrTruncated {
			t.Errorf("event %d logs %q", i, res.Stderr)
		}
		if len(starts) != 1 || starts[0] != c.ID()+" "+img.ID {
			t.Errorf("event %d: OnStart calls %q; want one with the container's ID and its image's", i, starts)
		}
		if res.ContainerID != c.ID() || res.ImageDigest != img.ID || res.ErrorType() != "" || res.Duration <= 0 {
			t.Errorf("event %d: result %+v", i, res)
		}
	}
	if _, err := c.Do(ctx, "", []byte("{\n}"), time.Second, noStart); !errors.Is(err, engine.ErrInvalidSpec) {
		t.Errorf("multi-line event: %v", err)
	}
	if !c.Alive() {
		t.Error("not Alive after a refused event")
	}

	t.Run("crash", func(t *testing.T) {
		c := startHot(t, h, cli, spec)
		_, res, err := do(c, `{"crash": true}`)
		if !errors.Is(err, engine.ErrHotBroken) || res.ExitCode != 3 || res.ErrorType() != "function_error" {
			t.Fatalf("crash: %v %+v", err, res)
		}
		if string(res.Stderr) != "handling \"\"\n" {
			t.Errorf("crash: logs %q; want what it wrote before it exited", res.Stderr)
		}
		if _, _, err := do(c, `{}`); !errors.Is(err, engine.ErrHotBroken) {
			t.Fatalf("after a crash: %v", err)
		}
	})
	t.Run("hang", func(t *testing.T) {
		c := startHot(t, h, cli, spec)
		begin := time.Now()
		res, err := c.Do(ctx, "", []byte(`{"hang_ms": 60000}`), time.Second, noStart)
		if !errors.Is(err, engine.ErrHotBroken) || !res.TimedOut || res.ErrorType() != "timeout" {
			t.Fatalf("hang: %v %+v", err, res)
		}
		if time.Since(begin) > 3*time.Second {
			t.Errorf("hang answered after %v", time.Since(begin))
		}
		if string(res.Stderr) != "handling \"\"\n" {
			t.Errorf("hang: logs %q; want what it wrote until the deadline", res.Stderr)
		}
	})
	t.Run("answers twice", func(t *testing.T) {
		c := startHot(t, h, cli, spec)
		if _, _, err := do(c, `{"twice": true}`); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if _, _, err := do(c, `{}`); !errors.Is(err, engine.ErrHotBroken) {
			t.Fatalf("after an extra line: %v", err)
		}
	})
	t.Run("onStart fails", func(t *testing.T) {
		c := startHot(t, h, cli, spec)
		errBoom := errors.New("event log unavailable")
		if _, err := c.Do(ctx, "", []byte(`{"name": "x"}`), 5*time.Second, func(string, string) error { return errBoom }); !errors.Is(err, errBoom) {
			t.Fatalf("Do: %v; want the OnStart error", err)
		}
		// Nothing ran: the container takes the next event as its first.
		a, _, err := do(c, `{"name": "y"}`)
		if err != nil || a.Count != 1 {
			t.Fatalf("after a failed OnStart: %+v %v; want the function's first event", a, err)
		}
	})
	t.Run("network none", func(t *testing.T) {
		s := spec
		s.Network = "none"
		c := startHot(t, h, cli, s)
		info, err := cli.ContainerInspect(ctx, c.ID())
		if err != nil {
			t.Fatal(err)
		}
		if info.HostConfig.NetworkMode != "none" {
			t.Errorf("network mode %q; want none", info.HostConfig.NetworkMode)
		}
		for i := 1; i <= 2; i++ {
			a, res, err := do(c, `{"name": "offline"}`)
			if err != nil || a.Count != i || a.Message != "Hello, offline!" || string(res.Stderr) != "handling \"offline\"\n" {
				t.Fatalf("event %d with no network: %+v %q %v", i, a, res.Stderr, err)
			}
		}
	})

	c.Close(ctx)
	if c.Alive() {
		t.Error("Alive after Close")
	}
	assertRemoved(t, cli, c.ID())
	if _, err := c.Do(ctx, "", []byte(`{}`), time.Second, noStart); !errors.Is(err, engine.ErrHotBroken) && !errors.Is(err, engine.ErrHotStale) {
		t.Errorf("Do after Close: %v; want it refused", err)
	}
	// Every container's socket went with it.
	rec.assertReleased(t)
}

// hotLogs is an event of the hotlogs function (testdata/hotlogs): before
// and after bytes of logs around its result line, padded with pad bytes.
func hotLogs(id string, before, after, pad int) []byte {
	return fmt.Appendf(nil, `{"id": %q, "before": %d, "after": %d, "pad": %d}`, id, before, after, pad)
}

// logLine is line i of size bytes, newline included, of the hotlogs
// function's logs tagged tag: as testdata/hotlogs writes it.
func logLine(tag string, i, size int) []byte {
	line := fmt.Appendf(nil, "%s %06d ", tag, i)
	for len(line) < size {
		line = append(line, 'x')
	}
	line = line[:size]
	line[size-1] = '\n'
	return line
}

// wantLogs are the n bytes of logs the hotlogs function writes for tag.
func wantLogs(tag string, n int) []byte {
	var b []byte
	for i := 0; n > 0; i++ {
		line := logLine(tag, i, min(n, 1024))
		b = append(b, line...)
		n -= len(line)
	}
	return b
}

// sameLogs reports how got differs from want, or "" when it does not.
func sameLogs(got, want []byte) string {
	if bytes.Equal(got, want) {
		return ""
	}
	n := 0
	for n < len(got) && n < len(want) && got[n] == want[n] {
		n++
	}
	lineStart := bytes.LastIndexByte(got[:n], '\n') + 1
	end := min(len(got), lineStart+80)
	return fmt.Sprintf("%d bytes, want %d; they differ from byte %d, in the line %q", len(got), len(want), n, got[lineStart:end])
}

// An invocation's logs are exactly what the function wrote to stderr
// before its result line, however much that is: none for a function that
// writes none, all of 900 KiB within the default 1 MiB limit, the first
// MiB of more. What it writes after its result line belongs to no
// invocation, neither its own nor the next.
func TestHotLogAttribution(t *testing.T) {
	h, _, cli, spec := dockerHost(t)
	spec.Image = buildFn(t, cli, "hotlogs").Tag
	spec.InvocationID = ""
	ctx := context.Background()
	do := func(t *testing.T, c engine.Hot, event []byte) engine.Result {
		t.Helper()
		res, err := c.Do(ctx, "", event, 30*time.Second, noStart)
		if err != nil {
			t.Fatalf("Do(%.60s): %v", event, err)
		}
		var out struct{ ID string }
		if err := json.Unmarshal(res.Stdout, &out); err != nil || !bytes.HasSuffix(res.Stdout, []byte("\n")) {
			t.Fatalf("Do(%.60s): result %.80q: %v", event, res.Stdout, err)
		}
		if res.ErrorType() != "" {
			t.Fatalf("Do(%.60s): result %+v", event, res)
		}
		return res
	}

	t.Run("megabytes before the result line", func(t *testing.T) {
		c := startHot(t, h, cli, spec)
		for _, id := range []string{"first", "second"} {
			res := do(t, c, hotLogs(id, 900<<10, 0, 0))
			if diff := sameLogs(res.Stderr, wantLogs(id+" before", 900<<10)); diff != "" || res.StderrTruncated {
				t.Errorf("%s invocation's logs (truncated %v): %s", id, res.StderrTruncated, diff)
			}
		}
	})
	t.Run("more than the limit before the result line", func(t *testing.T) {
		c := startHot(t, h, cli, spec)
		res := do(t, c, hotLogs("big", 3<<19, 0, 0))
		if diff := sameLogs(res.Stderr, wantLogs("big before", 3<<19)[:engine.DefaultOutputLimit]); diff != "" || !res.StderrTruncated {
			t.Errorf("logs (truncated %v): %s; want the first MiB, truncated", res.StderrTruncated, diff)
		}
		// The next invocation's logs are its own.
		res = do(t, c, hotLogs("next", 2048, 0, 0))
		if diff := sameLogs(res.Stderr, wantLogs("next before", 2048)); diff != "" || res.StderrTruncated {
			t.Errorf("next invocation's logs (truncated %v): %s", res.StderrTruncated, diff)
		}
	})
	t.Run("no logs", func(t *testing.T) {
		c := startHot(t, h, cli, spec)
		for i := range 3 {
			res := do(t, c, hotLogs(fmt.Sprint("quiet-", i), 0, 0, 0))
			if len(res.Stderr) != 0 || res.StderrTruncated {
				t.Errorf("invocation %d: logs %q (truncated %v); want none", i, res.Stderr, res.StderrTruncated)
			}
		}
	})
	t.Run("logs after the result line", func(t *testing.T) {
		c := startHot(t, h, cli, spec)
		res := do(t, c, hotLogs("a", 4096, 100<<10, 0))
		// What the function writes in the instant after its result line,
		// before the init has read the line, may still count with it: a
		// beginning of its late logs, never more than those, never
		// another's.
		rest, ok := bytes.CutPrefix(res.Stderr, wantLogs("a before", 4096))
		if !ok || !bytes.HasPrefix(wantLogs("a after", 100<<10), rest) {
			t.Errorf("first invocation's logs are not its logs before its result line and a beginning of those after: %.120q", res.Stderr)
		}
		// The function writes its late logs at once: they are all in the
		// init's hands before the next event.
		time.Sleep(500 * time.Millisecond)
		res = do(t, c, hotLogs("b", 1024, 0, 0))
		if diff := sameLogs(res.Stderr, wantLogs("b before", 1024)); diff != "" {
			t.Errorf("second invocation's logs: %s", diff)
		}
		if bytes.Contains(res.Stderr, []byte("a after")) {
			t.Error("the first invocation's late logs went to the second")
		}
		// And a function that only ever logs after its result: at most a
		// beginning of its own late logs, and none of the last one's.
		for _, id := range []string{"c", "d"} {
			res := do(t, c, hotLogs(id, 0, 8192, 0))
			if !bytes.HasPrefix(wantLogs(id+" after", 8192), res.Stderr) {
				t.Errorf("invocation %s: logs %.80q; want at most a beginning of its own late logs", id, res.Stderr)
			}
			time.Sleep(300 * time.Millisecond)
		}
	})
	t.Run("a result line over the limit", func(t *testing.T) {
		s := spec
		s.OutputLimit = 64 << 10
		c := startHot(t, h, cli, s)
		res := do(t, c, hotLogs("fits", 10, 0, 60<<10))
		if n := len(res.Stdout); n < 60<<10 {
			t.Fatalf("a line of %d bytes within the limit", n)
		}
		res, err := c.Do(ctx, "", hotLogs("over", 1024, 0, 128<<10), 30*time.Second, noStart)
		if !errors.Is(err, engine.ErrHotBroken) || !res.OutputLimited || res.ErrorType() != "output_limit" {
			t.Fatalf("a line over the limit: %v, OutputLimited %v, ErrorType %q", err, res.OutputLimited, res.ErrorType())
		}
		if diff := sameLogs(res.Stderr, wantLogs("over before", 1024)); diff != "" {
			t.Errorf("the logs before the line over the limit: %s", diff)
		}
		if strings.Contains(string(res.Stdout), "ppp") {
			t.Errorf("%d bytes of the line over the limit kept as the result", len(res.Stdout))
		}
	})
}
