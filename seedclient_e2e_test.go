package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/dockertest"
)

// seedClient speaks to the server exactly as the seed project's later Go
// client (pkg/client of AshitomW/Mini-Lambda-System at 42f2e78) does:
// the same methods, paths, headers and bodies, decoded into structs with
// its json tags. Its own package cannot be imported from outside its
// module (it imports the module's internal/domain), so its requests are
// reproduced here.
type seedClient struct {
	base    string
	headers http.Header
}

// The seed's domain.Function and the client's results, field for field.
type (
	seedFunction struct {
		ID         string            `json:"id"`
		Name       string            `json:"name"`
		Image      string            `json:"image"`
		Env        map[string]string `json:"env,omitempty"`
		MemoryMB   int64             `json:"memory_mb,omitempty"`
		TimeoutSec int               `json:"timeout_sec,omitempty"`
		CreatedAt  time.Time         `json:"created_at"`
		UpdatedAt  time.Time         `json:"updated_at,omitempty"`
	}
	seedSyncResult struct {
		Result       string    `json:"result"`
		Logs         string    `json:"logs,omitempty"`
		DurationMs   int64     `json:"duration"`
		InvocationID string    `json:"invocation_id,omitempty"`
		TraceID      string    `json:"trace_id,omitempty"`
		Timestamp    time.Time `json:"timestamp"`
	}
	seedAsyncResult struct {
		InvocationID string    `json:"invocation_id"`
		Status       string    `json:"status"`
		TraceID      string    `json:"trace_id,omitempty"`
		CreatedAt    time.Time `json:"created_at"`
	}
	seedWebhookResult struct {
		Status       string `json:"status"`
		Function     string `json:"function"`
		InvocationID string `json:"invocation_id,omitempty"`
		Result       string `json:"result,omitempty"`
		DurationMs   int64  `json:"duration_ms,omitempty"`
	}
	seedCloudEvent struct {
		SpecVersion string `json:"specversion"`
		ID          string `json:"id"`
		Source      string `json:"source"`
		Type        string `json:"type"`
		Time        string `json:"time"`
		ContentType string `json:"datacontenttype,omitempty"`
		Data        any    `json:"data"`
	}
)

// do sends one request as the seed client does and decodes the answer
// when its status is one of want; it returns the status.
func (c *seedClient) do(t *testing.T, method, path string, body any, extra map[string]string, out any, want ...int) int {
	t.Helper()
	var r *bytes.Reader
	if b, ok := body.([]byte); ok {
		r = bytes.NewReader(b)
	} else if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	} else {
		r = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range c.headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for _, w := range want {
		if resp.StatusCode == w {
			if out != nil {
				if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
					t.Errorf("%s %s: the seed client could not decode the answer: %v", method, path, err)
				}
			}
			return resp.StatusCode
		}
	}
	t.Errorf("%s %s: %d, the seed client wants %v", method, path, resp.StatusCode, want)
	return resp.StatusCode
}

// TestSeedClientWorksUnchanged registers, reads, lists and invokes (sync
// with its trace and request ids, async, as a CloudEvent) through the seed
// client's requests, checks health, and sends it webhooks, sync and async,
// on a server with a token the client sends as a custom header.
func TestSeedClientWorksUnchanged(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "testdata/hot", "minilambda-e2e-seed")
	const token = "seed-token"
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db, "--token", token)
	c := &seedClient{base: "http://" + s.addr, headers: http.Header{"Authorization": {"Bearer " + token}}}

	var fn seedFunction
	c.do(t, "POST", "/functions", seedFunction{Name: "seed", Image: img.Tag, Env: map[string]string{"A": "b"}, MemoryMB: 128, TimeoutSec: 20}, nil, &fn, 201)
	if fn.ID == "" || fn.TimeoutSec != 20 || fn.MemoryMB != 128 || fn.CreatedAt.IsZero() || fn.Env["A"] != "b" {
		t.Fatalf("registered: %+v", fn)
	}
	for _, ref := range []string{fn.ID, "seed"} {
		var got seedFunction
		if c.do(t, "GET", "/functions/"+ref, nil, nil, &got, 200); got.ID != fn.ID || got.TimeoutSec != 20 {
			t.Errorf("get %s: %+v", ref, got)
		}
	}
	var list []seedFunction
	if c.do(t, "GET", "/functions", nil, nil, &list, 200); len(list) != 1 || list[0].Name != "seed" {
		t.Errorf("list: %+v", list)
	}
	// A server-set field that conflicts is refused.
	c.do(t, "POST", "/functions", seedFunction{ID: "mine", Name: "other", Image: img.Tag}, nil, nil, 400)

	var res seedSyncResult
	c.do(t, "POST", "/invoke/"+fn.ID, map[string]any{"event": map[string]string{"name": "seed"}, "timeout": 10},
		map[string]string{"traceparent": "trace-from-the-seed", "X-Request-ID": "request-7"}, &res, 200)
	if res.Result == "" || res.InvocationID == "" || res.TraceID != "request-7" || res.Timestamp.IsZero() || res.Logs != "handling \"seed\"\n" {
		t.Errorf("sync: %+v", res)
	}
	c.do(t, "POST", "/invoke/"+fn.ID, map[string]any{"event": map[string]string{"name": "t"}, "timeout": 0},
		map[string]string{"traceparent": "trace-from-the-seed"}, &res, 200)
	if res.TraceID != "trace-from-the-seed" {
		t.Errorf("the seed client's trace id: %q", res.TraceID)
	}
	ce := seedCloudEvent{SpecVersion: "1.0", ID: "ce-1", Source: "/seed", Type: "seed.test", Time: time.Now().Format(time.RFC3339), Data: map[string]string{"name": "ce"}}
	c.do(t, "POST", "/invoke/"+fn.ID, map[string]any{"cloud_event": ce, "timeout": 0}, nil, &res, 200)
	var async seedAsyncResult
	c.do(t, "POST", "/invoke/"+fn.ID+"/async", map[string]any{"event": map[string]string{"name": "later"}, "timeout": 0},
		map[string]string{"X-Request-ID": "request-8"}, &async, 202)
	if async.InvocationID == "" || async.Status != "PENDING" || async.TraceID != "request-8" || async.CreatedAt.IsZero() {
		t.Errorf("async: %+v", async)
	}
	c.do(t, "GET", "/health", nil, nil, nil, 200)

	// Webhooks, to a function with a trigger behind the token.
	if code := s.callToken("PUT", "/functions/seed", map[string]any{"http_trigger": map[string]any{}}, token); code != 200 {
		t.Fatalf("add a trigger: %d", code)
	}
	// A sync hook answers with the function's own answer (a function URL's
	// convention), not the seed's webhook record: the function, which
	// reads a name at the top of its event, finds none in a URL event.
	var answer struct {
		Message string `json:"message"`
	}
	c.do(t, "POST", "/hooks/seed", []byte(`{"name": "hook"}`), nil, &answer, 200)
	if answer.Message != "Hello, !" {
		t.Errorf("sync webhook: %+v", answer)
	}
	var hook seedWebhookResult
	c.do(t, "POST", "/hooks/"+fn.ID+"?async=true", []byte(`{"name": "hook"}`), nil, &hook, 202)
	if hook.InvocationID == "" || hook.Status != "PENDING" {
		t.Errorf("async webhook: %+v", hook)
	}
	// An open event stream does not hold up shutdown.
	req, _ := http.NewRequest("GET", c.base+"/events?from=1", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	stream, err := http.DefaultClient.Do(req)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("events: %v %v", stream, err)
	}
	defer stream.Body.Close()
	first, _ := bufio.NewReader(stream.Body).ReadString('\n')
	if first != "id: 1\n" {
		t.Errorf("the stream began with %q", first)
	}
	begin := time.Now()
	if err := s.stop(15); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("shutdown with an open event stream took %v", d)
	}
	assertAudit(t, db)
}
