package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/minilambda/minilambda/function"
	lambdahttp "github.com/minilambda/minilambda/http"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/internal/metrics"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
	"github.com/minilambda/minilambda/runner/control"
	"github.com/minilambda/minilambda/runner/docker"
)

// env is one API server over the real runner, on a real engine and a
// fresh event log.
type env struct {
	*api
	log      *eventlog.Log
	instance string
	svc      *runner.Service
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
	driver, err := docker.New(rcli, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, instance := dockertest.UniqueLabel(t)
	svc, err := runner.New(runner.Options{Log: log, Engine: driver, Metrics: m, Instance: instance})
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := control.New(control.Options{Log: log, Engine: driver, Runner: svc, Views: svc.Views()})
	if err != nil {
		t.Fatal(err)
	}
	h := lambdahttp.New(lambdahttp.Options{
		Functions: ctl, Invoker: svc, Images: ctl, Status: svc, Views: svc.Views(),
		Registry: m.Registry, MaxImageBytes: o.maxImageBytes, Token: o.token,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	head := func() uint64 {
		seq, _ := log.Head()
		return seq
	}
	e := &env{api: &api{t: t, srv: httptest.NewServer(h), writes: head}, log: log, instance: instance, svc: svc, path: o.path}
	t.Cleanup(func() { e.close(cli) })
	return e
}

func (e *env) close(cli *client.Client) {
	if e.srv == nil {
		return
	}
	e.srv.Close()
	e.svc.Wait()
	if _, err := e.log.Verify(context.Background(), projections.Projector{}, nil); err != nil {
		e.t.Errorf("audit after the test: %v", err)
	}
	e.log.Close()
	dockertest.AssertNoContainers(e.t, cli, runner.LabelInstance, e.instance)
	e.srv = nil
}

func TestAPI(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "../testdata/fn", "minilambda-http-fn")

	t.Run("functions", func(t *testing.T) { testFunctions(t, newEnv(t, cli, envOpts{}).api, img.Tag) })
	t.Run("invoke", func(t *testing.T) { testInvoke(t, cli, img.Tag) })
	t.Run("concurrent", func(t *testing.T) { testConcurrent(t, cli, img.Tag) })
	t.Run("async", func(t *testing.T) { testAsync(t, cli, img.Tag) })
	t.Run("hang-up", func(t *testing.T) { testHangUp(t, cli, img.Tag) })
	t.Run("images", func(t *testing.T) { testImages(t, cli, img) })
	t.Run("outage", func(t *testing.T) { testOutage(t, cli, img.Tag) })
	t.Run("restart", func(t *testing.T) { testRestart(t, cli, img.Tag) })
	t.Run("auth", func(t *testing.T) { testAuth(t, newEnv(t, cli, envOpts{token: authToken}).api, img.Tag) })
	t.Run("hostile requests", func(t *testing.T) {
		e := newEnv(t, cli, envOpts{})
		e.do("POST", "/functions", map[string]any{"name": "fn", "image": img.Tag}, nil)
		testHostile(t, e.api)
	})
	t.Run("dead engine", func(t *testing.T) { testDeadEngine(t, cli, img.Tag) })
}

// untag removes the tag ref from the engine; the image stays under its
// other tags.
func untag(t *testing.T, cli *client.Client, ref string) {
	t.Helper()
	if _, err := cli.ImageRemove(context.Background(), ref, image.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
}

func testInvoke(t *testing.T, cli *client.Client, image string) {
	e := newEnv(t, cli, envOpts{})
	var f projections.Function
	e.do("POST", "/functions", map[string]any{"name": "fn", "image": image}, &f)
	// A function whose image the engine lost after it took it (one it
	// does not have is refused at registration).
	gone := dockertest.UniqueTag("minilambda-http-gone")
	if err := cli.ImageTag(context.Background(), image, gone); err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveImageAtCleanup(t, cli, gone)
	if code := e.do("POST", "/functions", map[string]any{"name": "missing", "image": gone}, nil); code != 201 {
		t.Fatalf("register missing: %d", code)
	}
	untag(t, cli, gone)

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
		errType    function.ErrorType
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
	testRequests(t, e.api)

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
	code, out := upload(t, e.api, "image", tar)
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
	code, out = upload(t, e.api, "image", tar)
	replaced, _ := out["replaced"].([]any)
	if code != 201 || len(replaced) != 1 || replaced[0].(map[string]any)["previous_id"] != other.ID || replaced[0].(map[string]any)["id"] != img.ID {
		t.Fatalf("upload over a moved tag: %d %v (other %s, image %s)", code, out, other.ID, img.ID)
	}
	var tags []string
	if e.do("GET", "/images", nil, &tags); !strings.Contains(strings.Join(tags, " "), tag) {
		t.Fatalf("list lacks %s: %v", tag, tags)
	}
	before := e.head()
	// An archive that passes the API's check, which the engine refuses.
	if code, out := upload(t, e.api, "image", makeSaveTar()); code != 400 {
		t.Errorf("garbage upload: %d %v", code, out)
	}
	if e.head() != before {
		t.Errorf("a failed upload wrote to the log")
	}
	testUploadErrors(t, e.api, 64<<20)
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
	// A spare prestarted before the outage holds its init and needs the
	// engine for nothing: it may still serve. Once none is left, invoke
	// answers 503.
	for i := 0; ; i++ {
		code := e.do("POST", "/invoke/fn", nil, nil)
		if code == 503 {
			break
		}
		if code != 200 || i > 8 {
			t.Fatalf("invoke %d with the engine down: %d", i, code)
		}
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
	if code, _ := upload(t, e.api, "image", makeSaveTar()); code != 503 {
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
