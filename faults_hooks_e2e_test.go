package main

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/dockertest"
)

// Issue 20's faults of hooks, schedules and the event stream, against the
// real binary (and, for hooks, the real engine).

// hfSeen is what internal/testfn/hook echoes of the event it got.
type hfSeen struct {
	RawPath               string            `json:"rawPath"`
	RawQueryString        string            `json:"rawQueryString"`
	Headers               map[string]string `json:"headers"`
	QueryStringParameters map[string]string `json:"queryStringParameters"`
	RequestContext        struct {
		HTTP struct {
			Path string `json:"path"`
		} `json:"http"`
	} `json:"requestContext"`
}

// hfHook sends a request to a hook of s and decodes the event its
// function saw.
func hfHook(t *testing.T, s *server, method, path string, body []byte, headers map[string]string) hfSeen {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.addr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var seen hfSeen
	if resp.StatusCode != 201 || json.Unmarshal(b, &seen) != nil {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return seen
}

// TestHookEventsAsFunctionURLs calls hooks of a server with a token as a
// client that sends the token on every request does: no function sees
// the server's token, whatever its trigger's auth (none, hmac, token),
// while a caller's own Authorization passes on. The event keeps the
// request as a Lambda function URL's does: rawPath as sent (escaped),
// the query as sent, a query pair that does not decode kept as sent, and
// the host among the headers.
func TestHookEventsAsFunctionURLs(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "internal/testfn/hook", "minilambda-e2e-hook")
	const token = "hf-hook-token"
	const secret = "a-webhook-secret-of-some-length"
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db, "--token", token)
	for name, trigger := range map[string]any{
		"public":  map[string]any{"auth": "none"},
		"signed":  map[string]any{"auth": "hmac", "hmac_secret": secret},
		"private": map[string]any{"auth": "token"},
	} {
		if code := s.callToken("POST", "/functions", map[string]any{"name": name, "image": img.Tag, "http_trigger": trigger}, token); code != 201 {
			t.Fatalf("register %s: %d", name, code)
		}
	}
	bearer := map[string]string{"Authorization": "Bearer " + token}
	if seen := hfHook(t, s, "POST", "/hooks/public", nil, bearer); seen.Headers["authorization"] != "" {
		t.Errorf("auth none: the function saw the server's token: %q", seen.Headers["authorization"])
	}
	payload := []byte(`{"action": "opened"}`)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(payload)
	signed := map[string]string{"Authorization": "Bearer " + token, "X-Hub-Signature-256": "sha256=" + hex.EncodeToString(mac.Sum(nil))}
	if seen := hfHook(t, s, "POST", "/hooks/signed", payload, signed); seen.Headers["authorization"] != "" || seen.Headers["x-hub-signature-256"] == "" {
		t.Errorf("auth hmac: the function saw the server's token: %q", seen.Headers["authorization"])
	}
	if seen := hfHook(t, s, "POST", "/hooks/private", nil, bearer); seen.Headers["authorization"] != "" {
		t.Errorf("auth token: the function saw the server's token: %q", seen.Headers["authorization"])
	}
	if seen := hfHook(t, s, "POST", "/hooks/public", nil, map[string]string{"Authorization": "Bearer the-callers-own"}); seen.Headers["authorization"] != "Bearer the-callers-own" {
		t.Errorf("a caller's own Authorization: %q", seen.Headers["authorization"])
	}

	seen := hfHook(t, s, "GET", "/hooks/public/a%2Fb/c%20d?y=%zz&x=1&x=%32&s=a+b", nil, nil)
	if seen.RawPath != "/a%2Fb/c%20d" || seen.RequestContext.HTTP.Path != "/a/b/c d" {
		t.Errorf("rawPath %q, http.path %q", seen.RawPath, seen.RequestContext.HTTP.Path)
	}
	if seen.RawQueryString != "y=%zz&x=1&x=%32&s=a+b" || seen.QueryStringParameters["y"] != "%zz" ||
		seen.QueryStringParameters["x"] != "1,2" || seen.QueryStringParameters["s"] != "a b" {
		t.Errorf("query %q, parameters %v", seen.RawQueryString, seen.QueryStringParameters)
	}
	if seen.Headers["host"] != s.addr {
		t.Errorf("headers.host %q, want %q", seen.Headers["host"], s.addr)
	}
	if err := s.stop(15); err != nil {
		t.Fatal(err)
	}
	assertAudit(t, db)
}

// TestScheduleZoneIsItsOwnField: a cron expression that names its own zone
// (CRON_TZ=, TZ=, Local among the zones) would fire in that zone while
// the schedule shows its timezone; it is a 400 that says where the zone
// goes, and nothing is registered.
func TestScheduleZoneIsItsOwnField(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "testdata/hot", "minilambda-e2e-hf-schedules")
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db)
	if code := s.call("POST", "/functions", map[string]any{"name": "tz", "image": img.Tag}, nil); code != 201 {
		t.Fatalf("register: %d", code)
	}
	for _, bad := range []map[string]any{
		{"cron": "CRON_TZ=Asia/Tokyo 0 9 * * *", "timezone": "Europe/Paris"},
		{"cron": "CRON_TZ=Local 0 9 * * *"},
		{"cron": "TZ=Asia/Tokyo 0 0 9 * * *", "timezone": "Asia/Tokyo"},
		{"cron": "TZ=UTC"},
	} {
		var e struct{ Error string }
		if code := s.call("POST", "/functions/tz/schedules", bad, &e); code != 400 || !strings.Contains(e.Error, `"timezone"`) {
			t.Errorf("%v: %d %q, want 400 naming the timezone field", bad, code, e.Error)
		}
	}
	var list []shownSchedule
	if code := s.call("GET", "/functions/tz/schedules", nil, &list); code != 200 || len(list) != 0 {
		t.Errorf("schedules after the refusals: %d %+v", code, list)
	}
	var paris shownSchedule
	if code := s.call("POST", "/functions/tz/schedules", map[string]any{"cron": "0 9 * * *", "timezone": "Europe/Paris"}, &paris); code != 201 ||
		paris.NextRunAt.In(hfZone(t, "Europe/Paris")).Hour() != 9 {
		t.Errorf("9:00 in Paris: %d %+v", code, paris)
	}
	if err := s.stop(15); err != nil {
		t.Fatal(err)
	}
	if n := dumpTypes(t, db)["schedule.created"]; n != 1 {
		t.Errorf("%d schedule.created events, want the one valid schedule", n)
	}
}

func hfZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// hfSubscribe opens GET /events on s with a Last-Event-ID, when given;
// the stream is closed at cleanup.
func hfSubscribe(t *testing.T, s *server, query, lastID string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/events"+query, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// hfFirstEvent is the seq of the first event (an id with data) of a
// stream, which it closes.
func hfFirstEvent(t *testing.T, resp *http.Response) uint64 {
	t.Helper()
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	var id uint64
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("the stream ended before an event: %v", err)
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "id: "); ok {
			id, _ = strconv.ParseUint(v, 10, 64)
		}
		if strings.HasPrefix(line, "data: ") {
			return id
		}
	}
}

// TestEventStreamLimits: Last-Event-ID is the last event the client
// received (the stream resumes after it, ?from= is the first seq sent),
// and the largest seq is a 400 rather than "new events only". The server
// serves at most 32 streams at once, and each counts against the memory
// budget: one more than either allows is a 429 with Retry-After, and a
// closed stream gives its room back.
func TestEventStreamLimits(t *testing.T) {
	const streamBytes = 8 << 20
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "testdata/hot", "minilambda-e2e-hf-events")
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db, "--memory-budget", strconv.Itoa(1<<30))
	for _, name := range []string{"a", "b", "c"} {
		if code := s.call("POST", "/functions", map[string]any{"name": name, "image": img.Tag}, nil); code != 201 {
			t.Fatalf("register: %d", code)
		}
	}
	if seq := hfFirstEvent(t, hfSubscribe(t, s, "", "1")); seq != 2 {
		t.Errorf("Last-Event-ID: 1 resumes at %d, want 2", seq)
	}
	if seq := hfFirstEvent(t, hfSubscribe(t, s, "?from=1", "2")); seq != 3 {
		t.Errorf("?from=1 with Last-Event-ID: 2 resumes at %d, want 3", seq)
	}
	if seq := hfFirstEvent(t, hfSubscribe(t, s, "?from=2", "")); seq != 2 {
		t.Errorf("?from=2 starts at %d", seq)
	}
	if resp := hfSubscribe(t, s, "", "18446744073709551615"); resp.StatusCode != 400 {
		t.Errorf("Last-Event-ID: 18446744073709551615: %d, want 400", resp.StatusCode)
	}

	if err := s.stop(15); err != nil {
		t.Fatal(err)
	}

	// As many streams as the server serves, and one more.
	s = startServer(t, db, "--memory-budget", strconv.Itoa(1<<30))
	var open []*http.Response
	for range 32 {
		resp := hfSubscribe(t, s, "?from=1", "")
		if resp.StatusCode != 200 {
			t.Fatalf("stream %d: %d", len(open)+1, resp.StatusCode)
		}
		open = append(open, resp)
	}
	if resp := hfSubscribe(t, s, "?from=1", ""); resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("stream 33: %d, Retry-After %q; want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	for _, resp := range open {
		resp.Body.Close()
	}
	if err := s.stop(15); err != nil {
		t.Fatal(err)
	}

	// A budget of two streams and a half.
	s = startServer(t, db, "--memory-budget", strconv.Itoa(2*streamBytes+streamBytes/2))
	first := hfSubscribe(t, s, "?from=1", "")
	if second := hfSubscribe(t, s, "?from=1", ""); first.StatusCode != 200 || second.StatusCode != 200 {
		t.Fatalf("within the budget: %d %d", first.StatusCode, second.StatusCode)
	}
	if resp := hfSubscribe(t, s, "?from=1", ""); resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("past the budget: %d, Retry-After %q; want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	first.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := hfSubscribe(t, s, "?from=1", "")
		if resp.StatusCode == 200 {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream's room never came back: %d", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.stop(15); err != nil {
		t.Fatal(err)
	}
	assertAudit(t, db)
}
