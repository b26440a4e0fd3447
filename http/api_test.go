package http_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	lambdahttp "github.com/minilambda/minilambda/http"
	"github.com/minilambda/minilambda/internal/disktest"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/engine"
	"github.com/prometheus/client_golang/prometheus"
)

// newFakeAPI is the API over a fake runner: no engine, no log.
func newFakeAPI(t *testing.T, token string, maxImageBytes int64) (*api, *fake) {
	t.Helper()
	return newFakeAPIWith(t, lambdahttp.Options{Token: token, MaxImageBytes: maxImageBytes})
}

// newFakeAPIWith is newFakeAPI with more options.
func newFakeAPIWith(t *testing.T, opts lambdahttp.Options) (*api, *fake) {
	t.Helper()
	return fakeAPIOver(t, newFake(), opts)
}

// fakeAPIOver is the API over the fake f, which opts may name for more
// parts (Versions) too.
func fakeAPIOver(t *testing.T, f *fake, opts lambdahttp.Options) (*api, *fake) {
	t.Helper()
	opts.Functions, opts.Invoker, opts.Images, opts.Status, opts.Views = f, f, f, f, f
	opts.Registry = prometheus.NewRegistry()
	h := lambdahttp.New(opts)
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
	t.Run("a bad setting's error names its field", func(t *testing.T) {
		e, _ := newFakeAPI(t, "", 0)
		for _, tc := range []struct{ body, field string }{
			{`"timeout": 901`, "timeout"},
			{`"memory_mb": 1`, "memory_mb"},
			{`"env": {"1X": "y"}`, "env"},
			{`"http_trigger": {"auth": "hmac", "hmac_secret": "short"}`, "http_trigger.hmac_secret"},
			{`"timeout": "10"`, "timeout"},
			{`"http_trigger": {"auth": 1}`, "http_trigger.auth"},
			{`"timout": 10`, "timout"},
			{`"id": "x"`, "id"},
			{`"name": ""`, "name"},
		} {
			var body map[string]any
			if code := e.do("POST", "/functions", `{"name": "x", "image": "i", `+tc.body+`}`, &body); code != 400 || body["field"] != tc.field {
				t.Errorf("%s: %d %v, want field %q", tc.body, code, body, tc.field)
			}
		}
		// A mistake of no one setting names none.
		var body map[string]any
		if code := e.do("POST", "/functions", `{"name": "x", "image": "i", "timeout": 5, "timeout_sec": 6}`, &body); code != 400 || body["field"] != nil {
			t.Errorf("timeout and timeout_sec: %d %v, want no field", code, body)
		}
		if code := e.do("POST", "/functions", `[]`, &body); code != 400 || body["field"] != nil {
			t.Errorf("not an object: %d %v, want no field", code, body)
		}
		var fn map[string]any
		if code := e.do("POST", "/functions", `{"name": "x", "image": "i"}`, &fn); code != 201 {
			t.Fatalf("register: %d %v", code, fn)
		}
		body = nil
		if code := e.do("PUT", "/functions/x", `{"concurrency": -1}`, &body); code != 400 || body["field"] != "concurrency" {
			t.Errorf("update: %d %v, want field concurrency", code, body)
		}
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
			rec := &projections.Invocation{InvocationID: "01J", Status: tc.status, ErrorType: tc.errorType}
			if tc.errorType != "" {
				rec.Error = "it went wrong"
			}
			f.set(func() { f.record = rec })
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
			{fmt.Errorf("append: %w: write /var/lib/secret/events.db: no space left on device", eventlog.ErrUnwritable), 503, "insufficient storage"},
			{ranUnrecorded{"01JRAN", fmt.Errorf("%w: write /var/lib/secret/events.db: no space left on device", eventlog.ErrUnwritable)}, 507, "invocation 01JRAN ran"},
			{errors.New("disk on fire at /var/lib/secret"), 500, "internal error"},
		} {
			f.set(func() { f.fail = tc.err })
			var body struct{ Error string }
			if code := e.do("POST", "/functions", map[string]any{"name": "x", "image": image}, &body); code != tc.want || !strings.Contains(body.Error, tc.says) {
				t.Errorf("%v: %d %q, want %d saying %q", tc.err, code, body.Error, tc.want, tc.says)
			}
			if strings.Contains(body.Error, "secret") {
				t.Errorf("a %d leaks the server's paths: %q", tc.want, body.Error)
			}
		}
		// A refusal of the log is one to try again later, and says when.
		f.set(func() { f.fail = fmt.Errorf("append: %w: no space left on device", eventlog.ErrUnwritable) })
		resp, err := e.srv.Client().Post(e.srv.URL+"/functions", "application/json", strings.NewReader(`{"name":"x","image":"`+image+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" {
			t.Errorf("a write the log refused: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
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
		f.set(func() { f.engineDown = true })
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
		f.set(func() { f.engineDown, f.logFull = false, true })
		clear(health)
		if code := e.do("GET", "/healthz", nil, &health); code != 503 || health["event_log"] != "unwritable" || health["docker"] != "ok" ||
			strings.Contains(fmt.Sprint(health["error"]), "/var/lib") {
			t.Errorf("healthz with the log unwritable: %d %v", code, health)
		}
		f.set(func() { f.logFull = false })
		clear(health)
		if code := e.do("GET", "/healthz", nil, &health); code != 200 || health["event_log"] != "ok" {
			t.Errorf("healthz once the log takes writes: %d %v", code, health)
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

// rawRequest writes head (request line and headers, without the blank
// line) and then body on a connection of its own, and returns it.
func rawRequest(t *testing.T, e *api, head, body string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, head+"\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	return conn
}

// answer reads the response on conn, within d, and reports whether the
// server then closed the connection (waiting until d for it to).
func answer(t *testing.T, conn net.Conn, d time.Duration) (*http.Response, string, bool) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer within %v: %v", d, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_, err = br.ReadByte()
	return resp, string(body), errors.Is(err, io.EOF)
}

// TestSlowAndStrangeClients: a body that trickles is cut with 408 and its
// connection closed; a steady one passes; a request without the token is
// answered at once, its body unread, and its connection closed.
func TestSlowAndStrangeClients(t *testing.T) {
	e, f := newFakeAPIWith(t, lambdahttp.Options{MinBodyRate: 1 << 10, BodyWindow: time.Second, Token: authToken})
	auth := "Authorization: Bearer " + authToken
	// Once the body is in, the pace no longer counts: an invocation may run
	// for many windows.
	t.Run("long invocation", func(t *testing.T) {
		f.set(func() { f.delay = time.Second })
		defer f.set(func() { f.delay = 0 })
		req, _ := http.NewRequest("POST", e.srv.URL+"/functions", strings.NewReader(`{"name": "long", "image": "i"}`))
		req.Header.Set("Authorization", "Bearer "+authToken)
		if resp, err := e.srv.Client().Do(req); err != nil || resp.StatusCode != 201 {
			t.Fatalf("register: %v %v", resp, err)
		}
		req, _ = http.NewRequest("POST", e.srv.URL+"/invoke/long", strings.NewReader(`{"event": {}}`))
		req.Header.Set("Authorization", "Bearer "+authToken)
		resp, err := e.srv.Client().Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("an invocation longer than the window: %v %v", resp, err)
		}
		resp.Body.Close()
	})
	t.Run("trickle", func(t *testing.T) {
		begin := time.Now()
		conn := rawRequest(t, e, "POST /functions HTTP/1.1\r\nHost: x\r\n"+auth+"\r\nContent-Length: 100", `{"na`)
		resp, body, closed := answer(t, conn, 5*time.Second)
		if resp.StatusCode != 408 || !strings.Contains(body, "slower than 1024 bytes a second") || !closed {
			t.Errorf("a trickling body: %d %s, closed %v", resp.StatusCode, body, closed)
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("cut after %v", d)
		}
	})
	t.Run("steady", func(t *testing.T) {
		// 1 KiB a second is met by 512 bytes every 200 ms, over two seconds.
		event := strings.Repeat("x", 5000)
		body := `{"name": "steady", "image": "i", "env": {"E": "` + event + `"}}`
		conn := rawRequest(t, e, fmt.Sprintf("POST /functions HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: %d", auth, len(body)), "")
		for chunk := range slices.Chunk([]byte(body), 512) {
			if _, err := conn.Write(chunk); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if resp, body, closed := answer(t, conn, time.Second); resp.StatusCode != 201 || closed {
			t.Errorf("a steady body: %d %s, connection closed %v", resp.StatusCode, body, closed)
		}
	})
	t.Run("stranger", func(t *testing.T) {
		begin := time.Now()
		// Under net/http's 256 KiB drain: only the cut keeps it from reading on.
		conn := rawRequest(t, e, "POST /functions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000", "{")
		resp, _, closed := answer(t, conn, 5*time.Second)
		if resp.StatusCode != 401 || !closed || time.Since(begin) > time.Second {
			t.Errorf("a request without the token: %d, closed %v, after %v", resp.StatusCode, closed, time.Since(begin))
		}
		// Any stranger's request refused, not only for its credentials.
		begin = time.Now()
		conn = rawRequest(t, e, "POST /hooks/no-such-function HTTP/1.1\r\nHost: x\r\nContent-Length: 100000", "{")
		resp, _, closed = answer(t, conn, 5*time.Second)
		if resp.StatusCode != 404 || !closed || time.Since(begin) > time.Second {
			t.Errorf("a stranger's hook that does not exist: %d, closed %v, after %v", resp.StatusCode, closed, time.Since(begin))
		}
	})
}

// TestSpoolFailures: an upload the server cannot store is the server's
// failure, 507 on a full disk and 503 otherwise, with no path in the
// answer; once there is room it works.
func TestSpoolFailures(t *testing.T) {
	disk := disktest.Small(t, 256<<10)
	var logged bytes.Buffer
	e, _ := newFakeAPIWith(t, lambdahttp.Options{SpoolDir: disk, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	filler := disktest.Fill(t, disk)
	code, out := upload(t, e, "image", makeSaveTar())
	if code != 507 || strings.Contains(fmt.Sprint(out), disk) {
		t.Errorf("upload to a full disk: %d %v", code, out)
	}
	if !strings.Contains(logged.String(), "no space left on device") {
		t.Errorf("the server's log lacks the cause: %q", logged.String())
	}
	disktest.Free(t, filler)
	if code, out := upload(t, e, "image", makeSaveTar()); code != 201 {
		t.Errorf("upload once there is room: %d %v", code, out)
	}
	if entries, _ := os.ReadDir(disk); len(entries) != 0 {
		t.Errorf("spool files left behind: %v", entries)
	}

	// A spool directory that cannot be made: its parent is a file.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	e, _ = newFakeAPIWith(t, lambdahttp.Options{SpoolDir: filepath.Join(file, "spool")})
	if code, out := upload(t, e, "image", makeSaveTar()); code != 503 || strings.Contains(fmt.Sprint(out), file) {
		t.Errorf("upload with no spool directory: %d %v", code, out)
	}
	// One swept away while the server runs is made again.
	swept := filepath.Join(t.TempDir(), "spool")
	e, _ = newFakeAPIWith(t, lambdahttp.Options{SpoolDir: swept})
	if code, out := upload(t, e, "image", makeSaveTar()); code != 201 {
		t.Errorf("upload after the spool directory was swept away: %d %v", code, out)
	}
}

// fakeBudget refuses what does not fit in max bytes.
type fakeBudget struct {
	mu        sync.Mutex
	used, max int64
}

func (b *fakeBudget) Reserve(n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return fmt.Errorf("%w: the memory budget is in use", function.ErrBusy)
	}
	b.used += n
	return nil
}

func (b *fakeBudget) Release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
}

// TestBodiesCountAgainstTheBudget: a request body is reserved before it is
// read and given back when the request ends; one that does not fit is 429
// with Retry-After, its body read past without being held.
// ranUnrecorded is the runner's error for an invocation that ran but whose
// end the log could not take yet.
type ranUnrecorded struct {
	id  string
	err error
}

func (e ranUnrecorded) Error() string        { return e.err.Error() }
func (e ranUnrecorded) Unwrap() error        { return e.err }
func (e ranUnrecorded) InvocationID() string { return e.id }

func TestBodiesCountAgainstTheBudget(t *testing.T) {
	budget := &fakeBudget{max: 1 << 20}
	e, f := newFakeAPIWith(t, lambdahttp.Options{Budget: budget})
	e.do("POST", "/functions", map[string]any{"name": "fn", "image": "i"}, nil)
	hold := make(chan struct{})
	f.set(func() { f.hold = hold })
	event := `{"event": "` + strings.Repeat("x", 700<<10) + `"}`
	first := make(chan int)
	go func() { first <- e.do("POST", "/invoke/fn", event, nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		budget.mu.Lock()
		used := budget.used
		budget.mu.Unlock()
		if used > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first request never reserved its body")
		}
		time.Sleep(time.Millisecond)
	}
	resp, err := e.srv.Client().Post(e.srv.URL+"/invoke/fn", "application/json", strings.NewReader(event))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a second body past the budget: %d %v", resp.StatusCode, resp.Header)
	}
	close(hold)
	if code := <-first; code != 200 {
		t.Errorf("the first: %d", code)
	}
	// The reservation ends with the handler, a moment after the answer.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		budget.mu.Lock()
		used := budget.used
		budget.mu.Unlock()
		if used == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still reserved after the requests ended", used)
		}
	}
	if code := e.do("POST", "/invoke/fn", event, nil); code != 200 {
		t.Errorf("once the budget is free again: %d", code)
	}
}

// lambdaCall sends a Lambda API request and returns its status, its
// x-amzn-ErrorType and the body.
func lambdaCall(t *testing.T, e *api, method, path, body string) (int, string, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+"/2015-03-31"+path, strings.NewReader(body))
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), data
}

// fakeLambda is the API, Lambda API included, over a fake whose engine
// has image, and a lambda function fn of it.
func fakeLambda(t *testing.T, image, digest string) (*api, *fake) {
	t.Helper()
	f := newFake()
	e, _ := fakeAPIOver(t, f, lambdahttp.Options{Versions: f})
	f.set(func() { f.digests[image] = digest })
	if code := e.do("POST", "/functions", map[string]any{"name": "fn", "image": image, "mode": "lambda"}, nil); code != 201 {
		t.Fatalf("register: %d", code)
	}
	return e, f
}

// lambdaRefused sends a Lambda API request that must be refused: 400
// InvalidParameterValueException in Lambda's shape, nothing recorded.
func lambdaRefused(t *testing.T, e *api, what, method, path, body string) {
	t.Helper()
	before := e.head()
	code, typ, data := lambdaCall(t, e, method, path, body)
	var msg struct{ Type, Message string }
	if code != 400 || typ != "InvalidParameterValueException" || json.Unmarshal(data, &msg) != nil || msg.Type != "User" || msg.Message == "" {
		t.Errorf("%s: %d %q %s, want 400 InvalidParameterValueException", what, code, typ, data)
	}
	if e.head() != before {
		t.Errorf("%s: refused, and recorded %d changes", what, e.head()-before)
	}
}

// TestLambdaDeleteWithAQualifierChangesNothing deletes with a qualifier,
// $LATEST too, in the query or in the name: each is 400
// InvalidParameterValueException and deletes nothing; without one, the
// function goes.
func TestLambdaDeleteWithAQualifierChangesNothing(t *testing.T) {
	e, _ := fakeLambda(t, "hello-lambda:1", "sha256:"+strings.Repeat("a", 64))
	for _, path := range []string{"/functions/fn?Qualifier=$LATEST", "/functions/fn?Qualifier=%24LATEST", "/functions/fn:$LATEST",
		"/functions/arn:aws:lambda:us-east-1:000000000000:function:fn:$LATEST", "/functions/fn?Qualifier=1", "/functions/fn?Qualifier=live"} {
		lambdaRefused(t, e, "DELETE "+path, "DELETE", path, "")
	}
	if code := e.do("GET", "/functions/fn", nil, nil); code != 200 {
		t.Fatalf("the function after refused deletes: %d", code)
	}
	if code, _, data := lambdaCall(t, e, "DELETE", "/functions/fn", ""); code != 204 {
		t.Errorf("delete without a qualifier: %d %s", code, data)
	}
	if code := e.do("GET", "/functions/fn", nil, nil); code != 404 {
		t.Errorf("the function after its delete: %d", code)
	}
}

// TestLambdaPublishWithAWrongCodeSha256ChangesNothing publishes with a
// CodeSha256 that is not the image's: 400 InvalidParameterValueException,
// and no version; with the image's, version 1.
func TestLambdaPublishWithAWrongCodeSha256ChangesNothing(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 4)
	e, f := fakeLambda(t, "hello-lambda:1", "sha256:"+hex)
	lambdaRefused(t, e, "a wrong CodeSha256", "POST", "/functions/fn/versions", `{"CodeSha256": "`+strings.Repeat("0", 64)+`"}`)
	if vs, _ := f.Versions("fn"); len(vs) != 0 {
		t.Fatalf("a refused publish published %+v", vs)
	}
	code, _, data := lambdaCall(t, e, "POST", "/functions/fn/versions", `{"CodeSha256": "`+hex+`", "Description": "one"}`)
	var v struct{ Version, CodeSha256, Description string }
	if code != 201 || json.Unmarshal(data, &v) != nil || v.Version != "1" || v.CodeSha256 != hex || v.Description != "one" {
		t.Errorf("publish with the right CodeSha256: %d %s", code, data)
	}
}
