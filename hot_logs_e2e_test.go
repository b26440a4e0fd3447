package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/runner"
)

// TestHotLogsAreExact checks, through the server, that a hot invocation's
// logs are what its function wrote to stderr before its result line, and
// nothing else: megabytes written just before the line are all there, a
// function that writes none has none, and what one writes after its
// result line is in neither that invocation's logs nor the next one's.
func TestHotLogsAreExact(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "testdata/hot", "minilambda-test-hot-logs")
	const limit = 4 << 20
	s := startServer(t, filepath.Join(t.TempDir(), "events.db"), "--output-limit", "4194304")
	// One container serves every call, so that each call's logs could be
	// another's.
	if code := s.call("POST", "/functions", map[string]any{"name": "logs", "image": img.Tag, "mode": "hot", "concurrency": 1}, nil); code != 201 {
		t.Fatalf("register: %d", code)
	}
	invoke := func(event map[string]any) string {
		t.Helper()
		var rec struct {
			Status string `json:"status"`
			Result string `json:"result"`
			Logs   string `json:"logs"`
			Error  string `json:"error"`
		}
		if code := s.call("POST", "/invoke/logs", map[string]any{"event": event}, &rec); code != 200 || rec.Status != "COMPLETED" {
			t.Fatalf("invoke %v: %d %s %s", event, code, rec.Status, rec.Error)
		}
		if !strings.Contains(rec.Result, "Hello, "+event["name"].(string)+"!") {
			t.Fatalf("invoke %v: result %q", event, rec.Result)
		}
		return rec.Logs
	}
	pattern := func(name string, n int) string {
		return string(bytes.Repeat([]byte(name+"|"), n/len(name+"|")+1)[:n])
	}

	for _, n := range []int{3 << 20, limit - len(`handling "big"`+"\n")} {
		logs := invoke(map[string]any{"name": "big", "log_bytes": n})
		if want := `handling "big"` + "\n" + pattern("big", n); logs != want {
			t.Errorf("%d bytes of logs just before the result line: got %d bytes, want %d (first difference at %d)",
				n, len(logs), len(want), firstDiff(logs, want))
		}
	}
	for range 20 {
		if logs := invoke(map[string]any{"name": "quiet", "quiet": true}); logs != "" {
			t.Fatalf("a function that writes no logs has logs %q", logs)
		}
	}
	// Written 20 ms after the result line, and the next event sent well
	// after that: the logs belong to no invocation.
	if logs := invoke(map[string]any{"name": "a", "after": "AFTER a\n", "after_ms": 20}); logs != `handling "a"`+"\n" {
		t.Errorf("the invocation whose function logs after its result line: logs %q", logs)
	}
	time.Sleep(200 * time.Millisecond)
	if logs := invoke(map[string]any{"name": "b"}); logs != `handling "b"`+"\n" {
		t.Errorf("the invocation after one whose function logged after its result: logs %q", logs)
	}
	// Under many calls in a row, each call's logs are its own.
	for i := range 200 {
		name := "n" + strings.Repeat("x", i%7)
		if logs := invoke(map[string]any{"name": name, "log_bytes": 100 + i}); logs != `handling "`+name+`"`+"\n"+pattern(name, 100+i) {
			t.Fatalf("call %d: logs %q", i, logs)
		}
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestContainersEndWithTheServer: a server killed outright leaves its hot
// and lambda containers, and a cold function's spare, with no one to
// answer them; their inits see the connection end and kill what they run,
// so the containers stop by themselves (the next start removes them).
func TestContainersEndWithTheServer(t *testing.T) {
	cli := dockertest.Client(t)
	hot := dockertest.BuildGoImage(t, cli, "testdata/hot", "minilambda-test-orphans-hot")
	lam := dockertest.BuildSampleAs(t, cli, "examples/hello-lambda-go", "minilambda-test-orphans-lambda", "bootstrap")
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db)
	for _, spec := range []map[string]any{
		{"name": "hot", "image": hot.Tag, "mode": "hot"},
		{"name": "lambda", "image": lam.Tag, "mode": "lambda"},
		{"name": "cold", "image": hot.Tag},
	} {
		if code := s.call("POST", "/functions", spec, nil); code != 201 {
			t.Fatalf("register %v: %d", spec, code)
		}
		// The cold function's call leaves a spare prestarted for the next.
		if code := s.call("POST", "/invoke/"+spec["name"].(string), map[string]any{"event": map[string]string{"name": "x"}}, nil); code != 200 {
			t.Fatalf("invoke %s: %d", spec["name"], code)
		}
	}
	label := filters.Arg("label", runner.LabelInstance+"="+instanceID(db))
	ctx := context.Background()
	running := func() []container.Summary {
		list, err := cli.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(label)})
		if err != nil {
			t.Fatal(err)
		}
		return list
	}
	if n := len(running()); n < 3 {
		t.Fatalf("%d containers running before the server is killed; want the hot, lambda and spare ones", n)
	}
	s.stop(syscall.SIGKILL)
	deadline := time.Now().Add(30 * time.Second)
	for left := running(); len(left) > 0; left = running() {
		if time.Now().After(deadline) {
			t.Errorf("%d containers still running 30 s after their server died, the first %.12s", len(left), left[0].ID)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}
