package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/projections"
)

// post sends body to the server with the headers given and decodes a JSON
// answer into out.
func (s *server) post(path string, body []byte, headers map[string]string, out any) *http.Response {
	s.t.Helper()
	req, _ := http.NewRequest("POST", "http://"+s.addr+path, bytes.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && json.Unmarshal(b, out) != nil {
		s.t.Errorf("POST %s: %d %s is not JSON", path, resp.StatusCode, b)
	}
	return resp
}

// TestTraceContextAndCloudEvents invokes with W3C traceparents and
// X-Request-IDs and finds the invocations again by trace id, checks that
// a lambda function gets the trace as Lambda-Runtime-Trace-Id and a cold
// one as TRACE_ID, and invokes with CloudEvents in structured mode, in
// binary mode and as a cloud_event member.
func TestTraceContextAndCloudEvents(t *testing.T) {
	cli := dockertest.Client(t)
	lam := dockertest.BuildGoImage(t, cli, "internal/testfn/lambdago", "minilambda-e2e-trace-lambda")
	hook := dockertest.BuildGoImage(t, cli, "internal/testfn/hook", "minilambda-e2e-trace-hook")
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db)
	for _, spec := range []map[string]any{
		{"name": "lam", "image": lam.Tag, "mode": "lambda"},
		{"name": "hook", "image": hook.Tag, "http_trigger": map[string]any{"auth": "none"}},
	} {
		if code := s.call("POST", "/functions", spec, nil); code != 201 {
			t.Fatalf("register: %d", code)
		}
	}
	const w3c = "4bf92f3577b34da6a3ce929d0e0e4736"
	var inv projections.Invocation
	resp := s.post("/invoke/lam", []byte(`{"event": {"name": "t"}}`), map[string]string{"traceparent": "00-" + w3c + "-00f067aa0ba902b7-01"}, &inv)
	var answer struct {
		Env map[string]string `json:"env"`
	}
	json.Unmarshal([]byte(inv.Result), &answer)
	if resp.StatusCode != 200 || inv.TraceID != w3c || resp.Header.Get("X-Trace-Id") != w3c ||
		!strings.HasPrefix(answer.Env["_X_AMZN_TRACE_ID"], "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736") {
		t.Errorf("traceparent: %d %s %q %+v", resp.StatusCode, inv.TraceID, resp.Header.Get("X-Trace-Id"), answer.Env)
	}
	resp = s.post("/invoke/lam", nil, map[string]string{"X-Request-ID": "req-42"}, &inv)
	if inv.TraceID != "req-42" || resp.Header.Get("X-Trace-Id") != "req-42" {
		t.Errorf("X-Request-ID: %s %q", inv.TraceID, resp.Header.Get("X-Trace-Id"))
	}
	var acc struct {
		InvocationID string `json:"invocation_id"`
		TraceID      string `json:"trace_id"`
	}
	if resp := s.post("/invoke/lam/async", nil, map[string]string{"traceparent": "00-" + w3c + "-00f067aa0ba902b7-01"}, &acc); resp.StatusCode != 202 || acc.TraceID != w3c {
		t.Errorf("async: %d %+v", resp.StatusCode, acc)
	}
	if resp := s.post("/invoke/lam", nil, nil, &inv); len(inv.TraceID) != 32 || resp.Header.Get("X-Trace-Id") != inv.TraceID {
		t.Errorf("a generated trace id: %q", inv.TraceID)
	}
	// A cold function started for its invocation has the trace in TRACE_ID.
	if resp := s.post("/hooks/hook", []byte("x"), map[string]string{"traceparent": "00-" + w3c + "-00f067aa0ba902b7-01"}, nil); resp.Header.Get("X-Trace-Env") != w3c ||
		resp.Header.Get("X-Trace-Id") != w3c {
		t.Errorf("a hook's trace: %q %q", resp.Header.Get("X-Trace-Env"), resp.Header.Get("X-Trace-Id"))
	}
	var page struct {
		Invocations []projections.Invocation `json:"invocations"`
	}
	deadline := time.Now().Add(time.Minute)
	for {
		s.call("GET", "/invocations?trace_id="+w3c, nil, &page)
		done := 0
		for _, i := range page.Invocations {
			if i.Status == "COMPLETED" {
				done++
			}
		}
		if len(page.Invocations) == 3 && done == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(page.Invocations) != 3 {
		t.Errorf("found %d invocations of trace %s, want 3 (sync, async, hook)", len(page.Invocations), w3c)
	}
	for _, i := range page.Invocations {
		if i.TraceID != w3c {
			t.Errorf("listed %+v", i)
		}
	}

	// CloudEvents: structured, binary, and as a member of the body.
	structured := `{"specversion": "1.0", "id": "e1", "source": "/tests", "type": "com.example.ping", "data": {"name": "ce"}}`
	resp = s.post("/invoke/lam", []byte(structured), map[string]string{"Content-Type": "application/cloudevents+json; charset=utf-8"}, &inv)
	if resp.StatusCode != 200 || inv.CloudEvent == nil || inv.CloudEvent.ID != "e1" || inv.CloudEvent.Type != "com.example.ping" || inv.CloudEvent.Source != "/tests" {
		t.Errorf("structured: %d %+v", resp.StatusCode, inv)
	}
	resp = s.post("/invoke/lam", []byte(`{"name": "binary"}`), map[string]string{"Content-Type": "application/json",
		"ce-specversion": "1.0", "ce-id": "e2", "ce-source": "/tests", "ce-type": "com.example.bin", "ce-subject": "a%20b"}, &inv)
	if resp.StatusCode != 200 || inv.CloudEvent == nil || inv.CloudEvent.ID != "e2" {
		t.Errorf("binary: %d %+v", resp.StatusCode, inv)
	}
	resp = s.post("/invoke/lam/async", []byte(`{"cloud_event": {"specversion": "1.0", "id": "e3", "source": "/tests", "type": "t", "data": 1}}`), nil, &acc)
	if resp.StatusCode != 202 {
		t.Errorf("cloud_event member: %d", resp.StatusCode)
	}
	for _, bad := range []struct {
		body    string
		headers map[string]string
	}{
		{`{"specversion": "1.0", "source": "/tests", "type": "t"}`, map[string]string{"Content-Type": "application/cloudevents+json"}},
		{`{}`, map[string]string{"ce-specversion": "1.0", "ce-id": "x", "ce-source": "/s"}},
		{`{"cloud_event": {"specversion": "0.3", "id": "x", "source": "/s", "type": "t"}}`, nil},
		{`{"cloud_event": {"id": "x"}, "event": {}}`, nil},
	} {
		if resp := s.post("/invoke/lam", []byte(bad.body), bad.headers, nil); resp.StatusCode != 400 {
			t.Errorf("%s %v: %d, want 400", bad.body, bad.headers, resp.StatusCode)
		}
	}
	if err := s.stop(15); err != nil {
		t.Fatal(err)
	}
	assertAudit(t, db)
	// What the function was given for the binary CloudEvent: the structured
	// form, with its data and extension attributes.
	dump, _, err := runCmd(t, "dump", "--db", db, "--type", "invocation.queued")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, line := range strings.Split(dump, "\n") {
		if strings.Contains(line, `"id":"e2"`) {
			found = strings.Contains(line, `"subject":"a b"`) && strings.Contains(line, `"data":{"name":"binary"}`) &&
				strings.Contains(line, `"datacontenttype":"application/json"`)
			if !found {
				t.Errorf("the binary CloudEvent as queued: %s", line)
			}
		}
	}
	if !found {
		t.Error("no queued event of the binary CloudEvent")
	}
}
