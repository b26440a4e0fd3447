package http_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/minilambda/minilambda/eventlog"
	lambdahttp "github.com/minilambda/minilambda/http"
	"github.com/minilambda/minilambda/internal/agent"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/internal/metrics"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
)

// env is one API server on a real engine and a fresh event log.
type env struct {
	t        *testing.T
	srv      *httptest.Server
	log      *eventlog.Log
	instance string
	ag       *agent.Agent
	path     string
}

type envOpts struct {
	path          string
	token         string
	dockerHost    string // another engine address, for outage tests
	maxImageBytes int64
}

func newEnv(t *testing.T, cli *client.Client, o envOpts) *env {
	t.Helper()
	if o.path == "" {
		o.path = filepath.Join(t.TempDir(), "events.db")
	}
	m := metrics.New()
	log, err := eventlog.Open(o.path, eventlog.Options{Projector: projections.Projector{}, OnCommit: m.Commit})
	if err != nil {
		t.Fatal(err)
	}
	rcli := cli
	if o.dockerHost != "" {
		rcli, err = client.NewClientWithOpts(client.WithHost(o.dockerHost), client.WithAPIVersionNegotiation())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rcli.Close() })
	}
	docker, err := runner.New(rcli, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, instance := dockertest.UniqueLabel(t)
	ag, err := agent.New(agent.Options{Log: log, Runner: docker, Metrics: m, Instance: instance})
	if err != nil {
		t.Fatal(err)
	}
	h := lambdahttp.New(lambdahttp.Options{Agent: ag, Views: ag.Views(), Registry: m.Registry, MaxImageBytes: o.maxImageBytes, Token: o.token,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	e := &env{t: t, srv: httptest.NewServer(h), log: log, instance: instance, ag: ag, path: o.path}
	t.Cleanup(func() { e.close(cli) })
	return e
}

func (e *env) close(cli *client.Client) {
	if e.srv == nil {
		return
	}
	e.srv.Close()
	e.ag.Wait()
	if _, err := e.log.Verify(context.Background(), projections.Projector{}, nil); err != nil {
		e.t.Errorf("audit after the test: %v", err)
	}
	e.log.Close()
	dockertest.AssertNoContainers(e.t, cli, agent.LabelInstance, e.instance)
	e.srv = nil
}

// do sends a request and decodes a JSON answer into out (when not nil).
func (e *env) do(method, path string, body any, out any) int {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		r = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, r)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); len(data) > 0 && path != "/metrics" && !strings.HasPrefix(ct, "application/json") {
		e.t.Errorf("%s %s answered %s, not JSON", method, path, ct)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	if resp.StatusCode >= 400 && path != "/healthz" {
		var eb struct{ Error string }
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			e.t.Errorf("%s %s: %d without a JSON error: %q", method, path, resp.StatusCode, data)
		}
	}
	return resp.StatusCode
}

func (e *env) head() uint64 {
	h, _ := e.log.Head()
	return h
}

func TestAPI(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-http-fn")

	t.Run("functions", func(t *testing.T) { testFunctions(t, cli, img.Tag) })
	t.Run("invoke", func(t *testing.T) { testInvoke(t, cli, img.Tag) })
	t.Run("concurrent", func(t *testing.T) { testConcurrent(t, cli, img.Tag) })
	t.Run("async", func(t *testing.T) { testAsync(t, cli, img.Tag) })
	t.Run("hang-up", func(t *testing.T) { testHangUp(t, cli, img.Tag) })
	t.Run("images", func(t *testing.T) { testImages(t, cli, img) })
	t.Run("outage", func(t *testing.T) { testOutage(t, cli, img.Tag) })
	t.Run("restart", func(t *testing.T) { testRestart(t, cli, img.Tag) })
	t.Run("auth", func(t *testing.T) { testAuth(t, cli, img.Tag) })
	t.Run("hostile requests", func(t *testing.T) { testHostile(t, cli, img.Tag) })
	t.Run("dead engine", func(t *testing.T) { testDeadEngine(t, cli, img.Tag) })
}

func testFunctions(t *testing.T, cli *client.Client, image string) {
	e := newEnv(t, cli, envOpts{})
	var f projections.Function
	if code := e.do("POST", "/functions", map[string]any{"name": "hello", "image": image, "env": map[string]string{"GREETING": "hi"}}, &f); code != 201 {
		t.Fatalf("register: %d", code)
	}
	if f.ID == "" || f.Version != 1 || f.Timeout != 30 || f.MemoryMB != 256 || f.Env["GREETING"] != "hi" {
		t.Fatalf("registered %+v", f)
	}
	e.do("POST", "/functions", map[string]any{"name": "second", "image": image}, nil)

	big := `{"name": "big", "image": "x", "env": {"A": "` + strings.Repeat("a", 7<<20) + `"}}`
	for _, tc := range []struct {
		name, method, path string
		body               any
		want               int
	}{
		{"duplicate name", "POST", "/functions", map[string]any{"name": "hello", "image": image}, 409},
		{"bad name", "POST", "/functions", map[string]any{"name": "has space", "image": image}, 400},
		{"long name", "POST", "/functions", map[string]any{"name": strings.Repeat("n", 65), "image": image}, 400},
		{"no image", "POST", "/functions", map[string]any{"name": "x"}, 400},
		{"bad image", "POST", "/functions", map[string]any{"name": "x", "image": "UPPER/Case:tag"}, 400},
		{"bad timeout", "POST", "/functions", map[string]any{"name": "x", "image": image, "timeout": 100000}, 400},
		{"bad memory", "POST", "/functions", map[string]any{"name": "x", "image": image, "memory_mb": 1}, 400},
		{"bad env key", "POST", "/functions", map[string]any{"name": "x", "image": image, "env": map[string]string{"1X": "y"}}, 400},
		{"host network", "POST", "/functions", map[string]any{"name": "x", "image": image, "network": "host"}, 400},
		{"unknown field", "POST", "/functions", map[string]any{"name": "x", "image": image, "memory": 5}, 400},
		{"wrong type", "POST", "/functions", map[string]any{"name": "x", "image": image, "timeout": "10"}, 400},
		{"malformed", "POST", "/functions", `{"name": "x",`, 400},
		{"trailing", "POST", "/functions", `{"name": "x", "image": "y"} {}`, 400},
		{"empty", "POST", "/functions", ``, 400},
		{"too large", "POST", "/functions", big, 413},
		{"get unknown", "GET", "/functions/nope", nil, 404},
		{"update unknown", "PUT", "/functions/nope", map[string]any{"image": image}, 404},
		{"rename onto taken", "PUT", "/functions/second", map[string]any{"name": "hello"}, 409},
		{"update invalid", "PUT", "/functions/hello", map[string]any{"timeout": -1}, 400},
		{"delete unknown", "DELETE", "/functions/nope", nil, 404},
		{"unknown path", "GET", "/nope", nil, 404},
		{"wrong method", "PATCH", "/functions", nil, 405},
	} {
		before := e.head()
		if code := e.do(tc.method, tc.path, tc.body, nil); code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.want)
		}
		if e.head() != before {
			t.Errorf("%s: wrote to the log", tc.name)
		}
	}

	var got projections.Function
	if code := e.do("GET", "/functions/hello", nil, &got); code != 200 || got.ID != f.ID {
		t.Fatalf("get by name: %d %+v", code, got)
	}
	if code := e.do("GET", "/functions/"+f.ID, nil, &got); code != 200 || got.Name != "hello" {
		t.Fatalf("get by id: %d %+v", code, got)
	}
	var list []projections.Function
	if e.do("GET", "/functions", nil, &list); len(list) != 2 || list[0].Name != "hello" || list[1].Name != "second" {
		t.Fatalf("list, oldest first: %+v", list)
	}
	if code := e.do("PUT", "/functions/hello", map[string]any{"timeout": 5}, &got); code != 200 || got.Version != 2 || got.Timeout != 5 || got.Image != image || got.Env["GREETING"] != "hi" {
		t.Fatalf("update: %d %+v", code, got)
	}
	if code := e.do("DELETE", "/functions/hello", nil, nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code := e.do("GET", "/functions/"+f.ID, nil, nil); code != 404 {
		t.Fatalf("get deleted: %d", code)
	}
	if code := e.do("POST", "/functions", map[string]any{"name": "hello", "image": image}, nil); code != 201 {
		t.Fatalf("a deleted function's name is free again: %d", code)
	}
}

func testInvoke(t *testing.T, cli *client.Client, image string) {
	e := newEnv(t, cli, envOpts{})
	var f projections.Function
	e.do("POST", "/functions", map[string]any{"name": "fn", "image": image}, &f)
	e.do("POST", "/functions", map[string]any{"name": "missing", "image": "minilambda-no-such-image:1"}, nil)

	// The seed's fields, plus the record.
	var raw map[string]any
	if code := e.do("POST", "/invoke/fn", map[string]any{"event": map[string]string{"name": "Ada"}}, &raw); code != 200 {
		t.Fatalf("invoke: %d %v", code, raw)
	}
	for _, field := range []string{"result", "duration", "timestamp", "invocation_id", "status", "logs", "exit_code", "created_at", "started_at", "completed_at", "attempts"} {
		if _, ok := raw[field]; !ok {
			t.Errorf("answer lacks %q: %v", field, raw)
		}
	}
	var inv projections.Invocation
	e.do("POST", "/invoke/"+f.ID, map[string]any{"event": map[string]string{"name": "Bo"}}, &inv)
	if inv.Status != "COMPLETED" || inv.Result != "{\"message\":\"Hello, Bo!\"}\n" || inv.Logs != "handling \"Bo\"\n" ||
		inv.ExitCode == nil || *inv.ExitCode != 0 || !strings.HasPrefix(inv.ImageDigest, "sha256:") || inv.Attempts != 1 {
		t.Fatalf("invoke by id: %+v", inv)
	}
	var again projections.Invocation
	if code := e.do("GET", "/invocations/"+inv.InvocationID, nil, &again); code != 200 || again.Result != inv.Result || again.Status != inv.Status {
		t.Fatalf("get invocation: %d %+v", code, again)
	}

	for _, tc := range []struct {
		name, path string
		body       any
		code       int
		status     string
		errType    string
	}{
		{"function error", "/invoke/fn", map[string]any{"event": map[string]any{"exit": 3}}, 502, "FAILED", "function_error"},
		{"timeout", "/invoke/fn", map[string]any{"event": map[string]any{"sleep_ms": 10000}, "timeout": 1}, 504, "FAILED", "timeout"},
		{"image missing", "/invoke/missing", nil, 502, "FAILED", "platform"},
	} {
		var inv projections.Invocation
		start := time.Now()
		if code := e.do("POST", tc.path, tc.body, &inv); code != tc.code || inv.Status != tc.status || inv.ErrorType != tc.errType || inv.Error == "" {
			t.Errorf("%s: %d %+v", tc.name, code, inv)
		}
		if tc.name == "timeout" && time.Since(start) > 8*time.Second {
			t.Errorf("timeout of 1 s answered after %v", time.Since(start))
		}
		if tc.name == "function error" && (inv.ExitCode == nil || *inv.ExitCode != 3 || !strings.Contains(inv.Logs, "boom")) {
			t.Errorf("function error record: %+v", inv)
		}
	}
	for _, tc := range []struct {
		name, path string
		body       any
		code       int
	}{
		{"unknown function", "/invoke/nope", nil, 404},
		{"event outside envelope", "/invoke/fn", map[string]any{"name": "x"}, 400},
		{"bad timeout", "/invoke/fn", map[string]any{"timeout": -5}, 400},
		{"malformed", "/invoke/fn", `{"event": `, 400},
		{"too large", "/invoke/fn", `{"event": "` + strings.Repeat("x", 7<<20) + `"}`, 413},
		{"bad status filter", "/invocations?status=DONE", nil, 400},
		{"bad limit", "/invocations?limit=0", nil, 400},
		{"bad cursor", "/invocations?cursor=zz", nil, 400},
		{"unknown invocation", "/invocations/01ZZZZZZZZZZZZZZZZZZZZZZZZ", nil, 404},
	} {
		before := e.head()
		method := "POST"
		if strings.HasPrefix(tc.path, "/invocations") {
			method = "GET"
		}
		if code := e.do(method, tc.path, tc.body, nil); code != tc.code {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.code)
		}
		if e.head() != before {
			t.Errorf("%s: wrote to the log", tc.name)
		}
	}

	// Concurrency 1: a second call while one runs is refused with 429.
	e.do("POST", "/functions", map[string]any{"name": "single", "image": image, "concurrency": 1}, nil)
	done := make(chan int)
	go func() {
		done <- e.do("POST", "/invoke/single", map[string]any{"event": map[string]any{"sleep_ms": 3000}}, nil)
	}()
	deadline := time.Now().Add(20 * time.Second)
	var page struct{ Invocations []projections.Invocation }
	for {
		e.do("GET", "/invocations?function=single", nil, &page)
		if len(page.Invocations) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := e.do("POST", "/invoke/single", nil, nil); code != 429 {
		t.Errorf("second call past concurrency 1: %d, want 429", code)
	}
	if code := <-done; code != 200 {
		t.Errorf("first call: %d", code)
	}

	var all struct {
		Invocations []projections.Invocation
		NextCursor  string `json:"next_cursor"`
	}
	e.do("GET", "/invocations?function=fn&limit=2", nil, &all)
	if len(all.Invocations) != 2 || all.NextCursor == "" || all.Invocations[0].InvocationID < all.Invocations[1].InvocationID {
		t.Fatalf("first page: %+v", all)
	}
	var failed struct{ Invocations []projections.Invocation }
	e.do("GET", "/invocations?status=FAILED", nil, &failed)
	if len(failed.Invocations) != 3 {
		t.Fatalf("FAILED invocations: %d, want 3", len(failed.Invocations))
	}

	var metricsText string
	req, _ := http.Get(e.srv.URL + "/metrics")
	b, _ := io.ReadAll(req.Body)
	req.Body.Close()
	metricsText = string(b)
	for _, want := range []string{
		`minilambda_invocations_total{error_type="",function="fn",status="COMPLETED"} 2`,
		`minilambda_invocations_total{error_type="timeout",function="fn",status="FAILED"} 1`,
		`minilambda_invocation_duration_seconds_bucket{function="fn",le="300"}`,
		`minilambda_container_starts_total{kind="cold"}`,
		`minilambda_eventlog_commit_seconds_count`,
		`minilambda_invocations_in_flight 0`,
	} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	var health map[string]any
	if code := e.do("GET", "/healthz", nil, &health); code != 200 || health["docker"] != "ok" || health["event_log_head"] == "" {
		t.Errorf("healthz: %d %v", code, health)
	}
	if code := e.do("GET", "/health", nil, nil); code != 200 {
		t.Errorf("health: %d", code)
	}
}

func testConcurrent(t *testing.T, cli *client.Client, image string) {
	e := newEnv(t, cli, envOpts{})
	e.do("POST", "/functions", map[string]any{"name": "fn", "image": image}, nil)
	var wg sync.WaitGroup
	codes := make([]int, 20)
	invs := make([]projections.Invocation, 20)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = e.do("POST", "/invoke/fn", map[string]any{"event": map[string]any{"name": fmt.Sprint(i)}}, &invs[i])
		}()
	}
	wg.Wait()
	for i, code := range codes {
		if code != 200 || invs[i].Result != fmt.Sprintf("{\"message\":\"Hello, %d!\"}\n", i) {
			t.Errorf("call %d: %d %+v", i, code, invs[i])
		}
	}
}

func testHangUp(t *testing.T, cli *client.Client, image string) {
	e := newEnv(t, cli, envOpts{})
	e.do("POST", "/functions", map[string]any{"name": "fn", "image": image}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/invoke/fn", strings.NewReader(`{"event": {"sleep_ms": 20000}}`))
	go func() {
		// Hang up once the container runs.
		for {
			var page struct{ Invocations []projections.Invocation }
			e.do("GET", "/invocations?status=RUNNING", nil, &page)
			if len(page.Invocations) > 0 {
				cancel()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if _, err := e.srv.Client().Do(req); err == nil {
		t.Fatal("request survived the hang-up")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var page struct{ Invocations []projections.Invocation }
		e.do("GET", "/invocations", nil, &page)
		if len(page.Invocations) == 1 && page.Invocations[0].Status == "FAILED" {
			if !strings.Contains(page.Invocations[0].Error, "client went away") {
				t.Errorf("hang-up recorded as %q", page.Invocations[0].Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hang-up not recorded: %+v", page)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func saveImage(t *testing.T, cli *client.Client, ref string) []byte {
	rc, err := cli.ImageSave(context.Background(), []string{ref})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func upload(t *testing.T, e *env, field string, data []byte) (int, map[string]any) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, _ := mw.CreateFormFile(field, "image.tar")
	w.Write(data)
	mw.Close()
	resp, err := e.srv.Client().Post(e.srv.URL+"/images", mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func testImages(t *testing.T, cli *client.Client, img dockertest.Image) {
	e := newEnv(t, cli, envOpts{maxImageBytes: 64 << 20})
	tag := dockertest.UniqueTag("minilambda-upload")
	if err := cli.ImageTag(context.Background(), img.ID, tag); err != nil {
		t.Fatal(err)
	}
	tar := saveImage(t, cli, tag)
	if _, err := cli.ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveImageAtCleanup(t, cli, tag)
	code, out := upload(t, e, "image", tar)
	if code != 201 || fmt.Sprint(out["loaded"]) != "["+tag+"]" || fmt.Sprint(out["replaced"]) != "[]" {
		t.Fatalf("upload: %d %v", code, out)
	}
	// Point the tag at another image; loading the archive again takes it
	// back, and the answer says so.
	other := dockertest.BuildImage(t, cli, "minilambda-other", map[string][]byte{
		"Dockerfile": []byte("FROM scratch\nCOPY note.txt /note.txt\n"), "note.txt": []byte("other"),
	}, nil)
	if err := cli.ImageTag(context.Background(), other.ID, tag); err != nil {
		t.Fatal(err)
	}
	code, out = upload(t, e, "image", tar)
	replaced, _ := out["replaced"].([]any)
	if code != 201 || len(replaced) != 1 || replaced[0].(map[string]any)["previous_id"] != other.ID || replaced[0].(map[string]any)["id"] != img.ID {
		t.Fatalf("upload over a moved tag: %d %v (other %s, image %s)", code, out, other.ID, img.ID)
	}
	var tags []string
	if e.do("GET", "/images", nil, &tags); !strings.Contains(strings.Join(tags, " "), tag) {
		t.Fatalf("list lacks %s: %v", tag, tags)
	}
	before := e.head()
	if code, out := upload(t, e, "image", []byte("not a tar at all")); code != 400 {
		t.Errorf("garbage upload: %d %v", code, out)
	}
	if code, out := upload(t, e, "image", makeSaveTar()); code != 400 {
		t.Errorf("garbage upload: %d %v", code, out)
	}
	if code, _ := upload(t, e, "file", tar); code != 400 {
		t.Errorf("upload without the image field: %d", code)
	}
	if code := e.do("POST", "/images", `{"json": true}`, nil); code != 400 {
		t.Errorf("upload that is not multipart: %d", code)
	}
	if code, _ := upload(t, e, "image", make([]byte, 65<<20)); code != 413 {
		t.Errorf("upload over the bound: %d", code)
	}
	if e.head() != before {
		t.Errorf("failed uploads wrote to the log")
	}
}

func testOutage(t *testing.T, cli *client.Client, image string) {
	proxy := dockertest.NewProxy(t, cli)
	e := newEnv(t, cli, envOpts{dockerHost: proxy.Host()})
	e.do("POST", "/functions", map[string]any{"name": "fn", "image": image}, nil)
	var inv projections.Invocation
	if code := e.do("POST", "/invoke/fn", map[string]any{"event": map[string]string{"name": "up"}}, &inv); code != 200 {
		t.Fatalf("before the outage: %d", code)
	}
	proxy.Stop()
	if code := e.do("GET", "/healthz", nil, nil); code != 503 {
		t.Errorf("healthz with the engine down: %d", code)
	}
	if code := e.do("POST", "/invoke/fn", nil, nil); code != 503 {
		t.Errorf("invoke with the engine down: %d", code)
	}
	if code := e.do("GET", "/images", nil, nil); code != 503 {
		t.Errorf("images with the engine down: %d", code)
	}
	if code := e.do("GET", "/invocations/"+inv.InvocationID, nil, nil); code != 200 {
		t.Errorf("records with the engine down: %d", code)
	}
	if code := e.do("GET", "/functions", nil, nil); code != 200 {
		t.Errorf("function list with the engine down: %d", code)
	}
	proxy.Start()
	if code := e.do("GET", "/healthz", nil, nil); code != 200 {
		t.Errorf("healthz after the outage: %d", code)
	}
	if code := e.do("POST", "/invoke/fn", nil, nil); code != 200 {
		t.Errorf("invoke after the outage: %d", code)
	}
}

func testRestart(t *testing.T, cli *client.Client, image string) {
	path := filepath.Join(t.TempDir(), "events.db")
	e := newEnv(t, cli, envOpts{path: path})
	var f projections.Function
	e.do("POST", "/functions", map[string]any{"name": "fn", "image": image}, &f)
	var inv projections.Invocation
	e.do("POST", "/invoke/fn", map[string]any{"event": map[string]string{"name": "before"}}, &inv)
	e.close(cli)

	e2 := newEnv(t, cli, envOpts{path: path})
	var got projections.Function
	if code := e2.do("GET", "/functions/fn", nil, &got); code != 200 || got.ID != f.ID {
		t.Fatalf("function after restart: %d %+v", code, got)
	}
	var again projections.Invocation
	if code := e2.do("GET", "/invocations/"+inv.InvocationID, nil, &again); code != 200 || again.Result != inv.Result {
		t.Fatalf("invocation after restart: %d %+v", code, again)
	}
	if code := e2.do("POST", "/invoke/fn", map[string]any{"event": map[string]string{"name": "after"}}, nil); code != 200 {
		t.Fatalf("invoke after restart: %d", code)
	}
}

func testAsync(t *testing.T, cli *client.Client, image string) {
	e := newEnv(t, cli, envOpts{})
	e.do("POST", "/functions", map[string]any{"name": "fn", "image": image}, nil)
	req, _ := http.NewRequest("POST", e.srv.URL+"/invoke/fn/async", strings.NewReader(`{"event": {"name": "later"}}`))
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var acc map[string]any
	json.NewDecoder(resp.Body).Decode(&acc)
	resp.Body.Close()
	id, _ := acc["invocation_id"].(string)
	if resp.StatusCode != 202 || acc["status"] != "PENDING" || acc["created_at"] == nil || resp.Header.Get("Location") != "/invocations/"+id {
		t.Fatalf("async answer: %d %v %v", resp.StatusCode, acc, resp.Header)
	}
	var inv projections.Invocation
	if code := e.do("GET", "/invocations/"+id, nil, &inv); code != 200 || !inv.Async || inv.Status != "PENDING" {
		t.Fatalf("queued record: %d %+v", code, inv)
	}
	var pending struct{ Invocations []projections.Invocation }
	if e.do("GET", "/invocations?status=PENDING&function=fn", nil, &pending); len(pending.Invocations) != 1 {
		t.Fatalf("pending list: %+v", pending)
	}
	for _, tc := range []struct {
		name, path, body string
		code             int
	}{
		{"unknown function", "/invoke/nope/async", `{}`, 404},
		{"callback not allowed", "/invoke/fn/async", `{"callback_url": "http://example.com/hook"}`, 400},
		{"callback on a sync call", "/invoke/fn", `{"callback_url": "http://example.com/hook"}`, 400},
		{"bad body", "/invoke/fn/async", `{"event": `, 400},
	} {
		before := e.head()
		if code := e.do("POST", tc.path, tc.body, nil); code != tc.code {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.code)
		}
		if e.head() != before {
			t.Errorf("%s: wrote to the log", tc.name)
		}
	}
}

func testAuth(t *testing.T, cli *client.Client, image string) {
	const token = "s3cret-token-for-tests"
	e := newEnv(t, cli, envOpts{token: token})
	send := func(method, path, auth string, body string) int {
		req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var eb struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&eb)
		if resp.StatusCode == 401 && (eb.Error == "" || resp.Header.Get("WWW-Authenticate") == "") {
			t.Errorf("%s %s: 401 without a JSON error or WWW-Authenticate", method, path)
		}
		return resp.StatusCode
	}
	reg := `{"name": "fn", "image": "` + image + `"}`
	for _, tc := range []struct {
		name, method, path, auth, body string
		want                           int
	}{
		{"no token", "POST", "/functions", "", reg, 401},
		{"wrong token", "POST", "/functions", "Bearer nope", reg, 401},
		{"token as basic", "POST", "/functions", "Basic " + token, reg, 401},
		{"token prefix", "POST", "/functions", "Bearer " + token[:5], reg, 401},
		{"list without token", "GET", "/functions", "", "", 401},
		{"unknown path without token", "GET", "/nope", "", "", 401},
		{"metrics without token", "GET", "/metrics", "", "", 401},
		{"healthz is open", "GET", "/healthz", "", "", 200},
		{"health is open", "GET", "/health", "", "", 200},
		{"right token", "POST", "/functions", "Bearer " + token, reg, 201},
		{"metrics with token", "GET", "/metrics", "Bearer " + token, "", 200},
	} {
		before := e.head()
		if code := send(tc.method, tc.path, tc.auth, tc.body); code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.want)
		}
		if tc.want == 401 && e.head() != before {
			t.Errorf("%s: wrote to the log", tc.name)
		}
	}
}

func testHostile(t *testing.T, cli *client.Client, image string) {
	e := newEnv(t, cli, envOpts{})
	e.do("POST", "/functions", map[string]any{"name": "fn", "image": image}, nil)
	deep := `{"event": ` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"invalid UTF-8", "POST", "/functions", "{\"name\": \"x\xff\", \"image\": \"y\"}", 400},
		{"deep nesting", "POST", "/invoke/fn", deep, 400},
		{"NUL in env", "POST", "/functions", `{"name": "x", "image": "y", "env": {"A": "a\u0000b"}}`, 400},
		{"image with spaces", "POST", "/functions", `{"name": "x", "image": "a b"}`, 400},
		{"image digest malformed", "POST", "/functions", `{"name": "x", "image": "a@sha256:zz"}`, 400},
		{"huge timeout", "POST", "/functions", `{"name": "x", "image": "y", "timeout": 1e12}`, 400},
		{"negative memory", "POST", "/functions", `{"name": "x", "image": "y", "memory_mb": -1}`, 400},
		{"NaN-like cpus", "POST", "/functions", `{"name": "x", "image": "y", "cpus": "NaN"}`, 400},
		{"too many attempts", "POST", "/functions", `{"name": "x", "image": "y", "max_attempts": 99}`, 400},
		{"unknown mode", "POST", "/functions", `{"name": "x", "image": "y", "mode": "warm"}`, 400},
		{"id with slashes matches no route", "GET", "/functions/..%2F..%2Fetc", "", 404},
		{"id of dots", "GET", "/functions/..", "", 404},
		{"id too long", "GET", "/invocations/" + strings.Repeat("a", 200), "", 400},
		{"id with unicode", "DELETE", "/functions/%E2%98%83", "", 400},
		{"invoke id with space", "POST", "/invoke/a%20b", "", 400},
	} {
		before := e.head()
		if code := e.do(tc.method, tc.path, tc.body, nil); code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.want)
		}
		if e.head() != before {
			t.Errorf("%s: wrote to the log", tc.name)
		}
	}
}

// testDeadEngine points the server at an engine socket where nothing
// listens: what needs the engine answers 503, what does not keeps working.
func testDeadEngine(t *testing.T, cli *client.Client, image string) {
	e := newEnv(t, cli, envOpts{dockerHost: "unix://" + filepath.Join(t.TempDir(), "dead.sock")})
	if code := e.do("POST", "/functions", map[string]any{"name": "fn", "image": image}, nil); code != 201 {
		t.Fatalf("register without an engine: %d", code)
	}
	var health map[string]any
	if code := e.do("GET", "/healthz", nil, &health); code != 503 || health["docker"] != "unreachable" {
		t.Errorf("healthz: %d %v", code, health)
	}
	var inv projections.Invocation
	if code := e.do("POST", "/invoke/fn", nil, &inv); code != 503 {
		t.Errorf("invoke: %d", code)
	}
	for _, path := range []string{"/images"} {
		if code := e.do("GET", path, nil, nil); code != 503 {
			t.Errorf("GET %s: %d", path, code)
		}
	}
	if code, _ := upload(t, e, "image", makeSaveTar()); code != 503 {
		t.Errorf("upload: %d", code)
	}
	var page struct{ Invocations []projections.Invocation }
	if code := e.do("GET", "/invocations", nil, &page); code != 200 || len(page.Invocations) != 1 || page.Invocations[0].ErrorType != "platform" {
		t.Errorf("invocations: %d %+v", code, page)
	}
	if code := e.do("GET", "/functions/fn", nil, nil); code != 200 {
		t.Errorf("function: %d", code)
	}
}

// makeSaveTar is the smallest archive that passes the upload check.
func makeSaveTar() []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Typeflag: tar.TypeReg, Size: 2, Mode: 0o644})
	tw.Write([]byte("[]"))
	tw.Close()
	return buf.Bytes()
}
