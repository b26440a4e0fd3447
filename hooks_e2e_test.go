package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/projections"
)

// hookSeen is what internal/testfn/hook echoes of its event.
type hookSeen struct {
	Version               string            `json:"version"`
	RawPath               string            `json:"rawPath"`
	RawQueryString        string            `json:"rawQueryString"`
	Cookies               []string          `json:"cookies"`
	Headers               map[string]string `json:"headers"`
	QueryStringParameters map[string]string `json:"queryStringParameters"`
	RequestContext        struct {
		HTTP struct {
			Method   string `json:"method"`
			Path     string `json:"path"`
			SourceIP string `json:"sourceIp"`
		} `json:"http"`
		RequestID string `json:"requestId"`
		TimeEpoch int64  `json:"timeEpoch"`
	} `json:"requestContext"`
	Body            string `json:"body"`
	IsBase64Encoded bool   `json:"isBase64Encoded"`
}

// TestHTTPTriggers calls functions through /hooks with curl and with Go's
// client, on a server with a token: a public hook (the request becomes a
// function URL event, the answer a function URL response), a hook behind
// the token, a webhook signed with HMAC as GitHub and Stripe sign them,
// async hooks, failures that leak nothing, and the secret never shown.
func TestHTTPTriggers(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "internal/testfn/hook", "minilambda-e2e-hook")
	const token = "hook-token"
	const secret = "a-webhook-secret-of-some-length"
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db, "--token", token)
	for name, trigger := range map[string]any{
		"public":  map[string]any{"auth": "none"},
		"private": map[string]any{},
		"signed":  map[string]any{"auth": "hmac", "hmac_secret": secret},
		"stripe":  map[string]any{"auth": "hmac", "hmac_secret": secret, "hmac_header": "Stripe-Signature", "async": true},
	} {
		if code := s.callToken("POST", "/functions", map[string]any{"name": name, "image": img.Tag, "http_trigger": trigger}, token); code != 201 {
			t.Fatalf("register %s: %d", name, code)
		}
	}
	if code := s.callToken("POST", "/functions", map[string]any{"name": "untriggered", "image": img.Tag}, token); code != 201 {
		t.Fatal(code)
	}
	base := "http://" + s.addr

	// curl, as a user tries it.
	out, err := exec.Command("curl", "-sS", "-i", "-X", "PUT", "-H", "Cookie: a=1; b=2", "-H", "X-Custom: yes",
		"--data-binary", "hello hook", base+"/hooks/public/some/path?x=1&y=2&x=3").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v %s", err, out)
	}
	head, body, _ := strings.Cut(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n\n")
	if !strings.HasPrefix(head, "HTTP/1.1 201") || !strings.Contains(head, "X-Echo-Method: PUT") || !strings.Contains(head, "Set-Cookie: seen=1; Path=/") ||
		!strings.Contains(head, "X-Invocation-Id: ") {
		t.Fatalf("curl answer:\n%s", out)
	}
	var seen hookSeen
	if err := json.Unmarshal([]byte(body), &seen); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if seen.Version != "2.0" || seen.RawPath != "/some/path" || seen.RawQueryString != "x=1&y=2&x=3" || seen.QueryStringParameters["x"] != "1,3" ||
		seen.RequestContext.HTTP.Method != "PUT" || seen.RequestContext.HTTP.SourceIP != "127.0.0.1" || seen.RequestContext.RequestID == "" ||
		seen.Headers["x-custom"] != "yes" || strings.Join(seen.Cookies, ";") != "a=1;b=2" || seen.Body != "hello hook" || seen.IsBase64Encoded ||
		time.Since(time.UnixMilli(seen.RequestContext.TimeEpoch)) > time.Minute {
		t.Errorf("the event: %+v", seen)
	}

	do := func(method, path string, body []byte, headers map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	// Bytes that are not UTF-8 arrive base64-encoded; a base64 answer is
	// decoded; a bare result is the body of a 200.
	if resp, b := do("POST", "/hooks/public", []byte{0xff, 0xfe, 0}, nil); resp.StatusCode != 201 ||
		json.Unmarshal(b, &seen) != nil || !seen.IsBase64Encoded || seen.Body != "//4A" || seen.RawPath != "/" {
		t.Errorf("binary request: %d %s", resp.StatusCode, b)
	}
	if resp, b := do("POST", "/hooks/public", []byte("binary"), nil); resp.StatusCode != 200 || !bytes.Equal(b, []byte{0, 1, 2, 0xff}) ||
		resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("binary answer: %d %q %v", resp.StatusCode, b, resp.Header)
	}
	if resp, b := do("POST", "/hooks/public", []byte("plain"), nil); resp.StatusCode != 200 || string(b) != `"just a string"` {
		t.Errorf("bare answer: %d %s", resp.StatusCode, b)
	}
	// A failure says nothing of the function.
	if resp, b := do("POST", "/hooks/public", []byte("fail"), nil); resp.StatusCode != 502 || strings.Contains(string(b), "secret") || strings.Contains(string(b), "exit") {
		t.Errorf("failure: %d %s", resp.StatusCode, b)
	}

	// Behind the token: the token is needed, and not passed on.
	if resp, _ := do("GET", "/hooks/private", nil, nil); resp.StatusCode != 401 {
		t.Errorf("private without the token: %d", resp.StatusCode)
	}
	if resp, b := do("GET", "/hooks/private", nil, map[string]string{"Authorization": "Bearer " + token}); resp.StatusCode != 201 ||
		json.Unmarshal(b, &seen) != nil || seen.Headers["authorization"] != "" {
		t.Errorf("private with the token: %d %s", resp.StatusCode, b)
	}

	// Signed as GitHub signs: the right signature passes, any other not.
	payload := []byte(`{"action": "opened"}`)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(payload)
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if resp, b := do("POST", "/hooks/signed", payload, map[string]string{"X-Hub-Signature-256": sig}); resp.StatusCode != 201 ||
		json.Unmarshal(b, &seen) != nil || seen.Body != string(payload) {
		t.Errorf("signed: %d %s", resp.StatusCode, b)
	}
	for _, bad := range []map[string]string{nil, {"X-Hub-Signature-256": "sha256=00"}, {"X-Hub-Signature-256": sig, "X-Other": "x"}} {
		body := payload
		if bad != nil && bad["X-Other"] != "" {
			body = []byte(`{"action": "closed"}`)
		}
		if resp, _ := do("POST", "/hooks/signed", body, bad); resp.StatusCode != 401 {
			t.Errorf("badly signed %v: %d", bad, resp.StatusCode)
		}
	}
	// Signed as Stripe signs, and async by the trigger's setting.
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac = hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(payload)))
	resp, b := do("POST", "/hooks/stripe", payload, map[string]string{"Stripe-Signature": "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))})
	var acc struct {
		InvocationID string `json:"invocation_id"`
	}
	if resp.StatusCode != 202 || json.Unmarshal(b, &acc) != nil || acc.InvocationID == "" {
		t.Fatalf("stripe: %d %s", resp.StatusCode, b)
	}
	var inv projections.Invocation
	deadline := time.Now().Add(time.Minute)
	for inv.Status != "COMPLETED" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		s.callAs("GET", "/invocations/"+acc.InvocationID, nil, &inv, token)
	}
	if inv.Status != "COMPLETED" || !strings.Contains(inv.Result, `"statusCode":201`) {
		t.Errorf("the async hook's invocation: %+v", inv)
	}
	// X-Invocation-Type: Event makes any hook async.
	if resp, _ := do("POST", "/hooks/public", nil, map[string]string{"X-Invocation-Type": "Event"}); resp.StatusCode != 202 {
		t.Errorf("event header: %d", resp.StatusCode)
	}

	// No trigger, no function: 404. The secret is never shown.
	for _, path := range []string{"/hooks/untriggered", "/hooks/nope", "/hooks/bad%20name"} {
		if resp, _ := do("POST", path, nil, nil); resp.StatusCode != 404 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	var fn map[string]any
	if code := s.callAs("GET", "/functions/signed", nil, &fn, token); code != 200 || strings.Contains(toJSON(fn), secret) ||
		!strings.Contains(toJSON(fn), `"auth":"hmac"`) {
		t.Errorf("the function as shown: %d %v", code, fn)
	}
	// A change that does not give the secret again keeps it.
	if code := s.callToken("PUT", "/functions/signed", map[string]any{"http_trigger": map[string]any{"auth": "hmac"}, "timeout": 20}, token); code != 200 {
		t.Fatalf("update: %d", code)
	}
	if resp, _ := do("POST", "/hooks/signed", payload, map[string]string{"X-Hub-Signature-256": sig}); resp.StatusCode != 201 {
		t.Errorf("signed after an update: %d", resp.StatusCode)
	}
	if code := s.callToken("POST", "/functions", map[string]any{"name": "weak", "image": img.Tag, "http_trigger": map[string]any{"auth": "hmac", "hmac_secret": "short"}}, token); code != 400 {
		t.Errorf("a short secret: %d", code)
	}
	if err := s.stop(15); err != nil {
		t.Fatal(err)
	}
	assertAudit(t, db)
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
