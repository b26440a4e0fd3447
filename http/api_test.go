package http_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	lambdahttp "github.com/minilambda/minilambda/http"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/engine"
	"github.com/prometheus/client_golang/prometheus"
)

// newFakeAPI is the API over a fake runner: no engine, no log.
func newFakeAPI(t *testing.T, token string, maxImageBytes int64) (*api, *fake) {
	t.Helper()
	f := newFake()
	h := lambdahttp.New(lambdahttp.Options{
		Functions: f, Invoker: f, Images: f, Status: f, Views: f,
		Registry: prometheus.NewRegistry(), Token: token, MaxImageBytes: maxImageBytes,
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &api{t: t, srv: srv, writes: func() uint64 {
		seq, _ := f.Head()
		return seq
	}}, f
}

// TestAPIWithoutEngine runs the API's own work (decoding, checking,
// authentication, error mapping, hostile input) over a fake runner, so
// that it needs no Docker engine. engine_test.go runs the same checks on
// the real runner.
func TestAPIWithoutEngine(t *testing.T) {
	const image = "hello-lambda:1"
	t.Run("functions", func(t *testing.T) {
		e, _ := newFakeAPI(t, "", 0)
		testFunctions(t, e, image)
	})
	t.Run("type errors name JSON types", func(t *testing.T) {
		e, _ := newFakeAPI(t, "", 0)
		for field, want := range map[string]string{
			`"mode": 1`:       `field "mode" must be string, not number`,
			`"timeout": "10"`: `field "timeout" must be int, not string`,
			`"env": []`:       `field "env" must be map[string]string, not array`,
		} {
			var body struct{ Error string }
			if code := e.do("POST", "/functions", `{"name": "x", "image": "i", `+field+`}`, &body); code != 400 || body.Error != want {
				t.Errorf("%s: %d %q, want %q", field, code, body.Error, want)
			}
		}
	})
	t.Run("requests", func(t *testing.T) {
		e, f := newFakeAPI(t, "", 0)
		e.do("POST", "/functions", map[string]any{"name": "fn", "image": image}, nil)
		var inv projections.Invocation
		if code := e.do("POST", "/invoke/fn", `{"event": {"name": "Ada"}, "timeout": 3}`, &inv); code != 200 || inv.Result != `{"name": "Ada"}` {
			t.Fatalf("invoke: %d %+v", code, inv)
		}
		if f.lastRequest.Timeout != 3 || string(f.lastRequest.Event) != `{"name": "Ada"}` {
			t.Errorf("the runner was asked for %+v", f.lastRequest)
		}
		if code := e.do("POST", "/invoke/fn", nil, &inv); code != 200 || inv.Result != "{}" {
			t.Errorf("an empty body: %d %+v", code, inv)
		}
		resp, err := e.srv.Client().Post(e.srv.URL+"/invoke/fn/async", "application/json", strings.NewReader(`{"event": 1}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 || !strings.HasPrefix(resp.Header.Get("Location"), "/invocations/") || !strings.Contains(string(body), `"status":"PENDING"`) {
			t.Errorf("async: %d %s %q", resp.StatusCode, resp.Header, body)
		}
		testRequests(t, e)
	})
	t.Run("status of a sync invocation", func(t *testing.T) {
		e, f := newFakeAPI(t, "", 0)
		e.do("POST", "/functions", map[string]any{"name": "fn", "image": image}, nil)
		for _, tc := range []struct {
			status    string
			errorType function.ErrorType
			want      int
		}{
			{projections.StatusCompleted, "", 200},
			{projections.StatusFailed, function.ErrorFunction, 502},
			{projections.StatusFailed, function.ErrorOutOfMemory, 502},
			{projections.StatusFailed, function.ErrorPlatform, 502},
			{projections.StatusFailed, function.ErrorTimeout, 504},
		} {
			f.record = &projections.Invocation{InvocationID: "01J", Status: tc.status, ErrorType: tc.errorType}
			if tc.errorType != "" {
				f.record.Error = "it went wrong"
			}
			var inv projections.Invocation
			if code := e.do("POST", "/invoke/fn", nil, &inv); code != tc.want || inv.Status != tc.status || inv.ErrorType != tc.errorType {
				t.Errorf("%s %s: %d %+v, want %d and the record", tc.status, tc.errorType, code, inv, tc.want)
			}
		}
	})
	t.Run("error mapping", func(t *testing.T) {
		e, f := newFakeAPI(t, "", 0)
		for _, tc := range []struct {
			err  error
			want int
			says string
		}{
			{fmt.Errorf("%w: name is empty", function.ErrInvalid), 400, "name is empty"},
			{fmt.Errorf("%w: taken", function.ErrConflict), 409, "taken"},
			{fmt.Errorf("%w: full", function.ErrBusy), 429, "full"},
			{fmt.Errorf("function %q: %w", "x", projections.ErrNotFound), 404, "not found"},
			{projections.ErrBadCursor, 400, "cursor"},
			{fmt.Errorf("%w: no manifest", engine.ErrBadImage), 400, "no manifest"},
			{fmt.Errorf("%w: ping: refused", engine.ErrEngineUnavailable), 503, "unavailable"},
			{fmt.Errorf("append: %w", eventlog.ErrClosed), 503, "shutting down"},
			{errors.New("disk on fire at /var/lib/secret"), 500, "internal error"},
		} {
			f.fail = tc.err
			var body struct{ Error string }
			if code := e.do("POST", "/functions", map[string]any{"name": "x", "image": image}, &body); code != tc.want || !strings.Contains(body.Error, tc.says) {
				t.Errorf("%v: %d %q, want %d saying %q", tc.err, code, body.Error, tc.want, tc.says)
			}
			if tc.want == 500 && strings.Contains(body.Error, "secret") {
				t.Errorf("a 500 leaks the error: %q", body.Error)
			}
		}
	})
	t.Run("auth", func(t *testing.T) {
		e, _ := newFakeAPI(t, authToken, 0)
		testAuth(t, e, image)
	})
	t.Run("hostile requests", func(t *testing.T) {
		e, _ := newFakeAPI(t, "", 0)
		e.do("POST", "/functions", map[string]any{"name": "fn", "image": image}, nil)
		testHostile(t, e)
	})
	t.Run("uploads", func(t *testing.T) {
		e, _ := newFakeAPI(t, "", 1<<20)
		testUploadErrors(t, e, 1<<20)
		before := e.head()
		code, out := upload(t, e, "image", makeSaveTar())
		if code != 201 || fmt.Sprint(out["loaded"]) != "[fake:latest]" || fmt.Sprint(out["replaced"]) != "[]" || e.head() == before {
			t.Errorf("upload: %d %v", code, out)
		}
		var tags []string
		if code := e.do("GET", "/images", nil, &tags); code != 200 || len(tags) != 1 {
			t.Errorf("images: %d %v", code, tags)
		}
	})
	t.Run("health", func(t *testing.T) {
		e, f := newFakeAPI(t, "", 0)
		e.do("POST", "/functions", map[string]any{"name": "fn", "image": image}, nil)
		var health map[string]any
		if code := e.do("GET", "/healthz", nil, &health); code != 200 || health["docker"] != "ok" || health["event_log_seq"] != 1.0 || len(fmt.Sprint(health["event_log_head"])) != 64 {
			t.Errorf("healthz: %d %v", code, health)
		}
		f.engineDown = true
		for _, path := range []string{"/healthz", "/health"} {
			clear(health)
			if code := e.do("GET", path, nil, &health); code != 503 || health["docker"] != "unreachable" || health["event_log_seq"] != 1.0 {
				t.Errorf("%s with the engine down: %d %v", path, code, health)
			}
		}
		// What needs no engine keeps working.
		if code := e.do("GET", "/functions/fn", nil, nil); code != 200 {
			t.Errorf("function with the engine down: %d", code)
		}
		resp, err := http.Get(e.srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Errorf("metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})
}
