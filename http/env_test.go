package http_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// The checks here run against two backends: a fake of the runner and the
// views (api_test.go: no engine needed) and the real runner on the real
// engine (engine_test.go).

// api is an API server under test.
type api struct {
	t   *testing.T
	srv *httptest.Server
	// writes moves whenever something is recorded: the log's head, or the
	// fake's count of what it would have appended.
	writes func() uint64
}

func (e *api) head() uint64 { return e.writes() }

// do sends a request and decodes a JSON answer into out (when not nil).
func (e *api) do(method, path string, body any, out any) int {
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

// testFunctions registers, reads, changes and deletes functions, and sends
// requests that must be refused without writing anything.
func testFunctions(t *testing.T, e *api, image string) {
	var f projections.Function
	if code := e.do("POST", "/functions", map[string]any{"name": "hello", "image": image, "env": map[string]string{"GREETING": "hi"}}, &f); code != 201 {
		t.Fatalf("register: %d", code)
	}
	if f.ID == "" || f.Version != 1 || f.Timeout != 30 || f.MemoryMB != 256 || f.Env["GREETING"] != "hi" {
		t.Fatalf("registered %+v", f)
	}
	e.do("POST", "/functions", map[string]any{"name": "second", "image": image}, nil)

	// A registration may carry a zip package: its limit is Lambda's for one.
	big := `{"name": "big", "image": "x", "env": {"A": "` + strings.Repeat("a", function.MaxZipRequestBytes) + `"}}`
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
		{"mode of the wrong type", "POST", "/functions", map[string]any{"name": "x", "image": image, "mode": 1}, 400},
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

// testRequests sends invocation and listing requests that must be
// refused without writing anything. e has a function "fn".
func testRequests(t *testing.T, e *api) {
	for _, tc := range []struct {
		name, method, path string
		body               any
		code               int
	}{
		{"unknown function", "POST", "/invoke/nope", nil, 404},
		{"event outside envelope", "POST", "/invoke/fn", map[string]any{"name": "x"}, 400},
		{"bad timeout", "POST", "/invoke/fn", map[string]any{"timeout": -5}, 400},
		{"timeout past the maximum", "POST", "/invoke/fn", map[string]any{"timeout": 901}, 400},
		{"malformed", "POST", "/invoke/fn", `{"event": `, 400},
		{"too large", "POST", "/invoke/fn", `{"event": "` + strings.Repeat("x", 7<<20) + `"}`, 413},
		{"bad status filter", "GET", "/invocations?status=DONE", nil, 400},
		{"bad limit", "GET", "/invocations?limit=0", nil, 400},
		{"bad cursor", "GET", "/invocations?cursor=zz", nil, 400},
		{"unknown invocation", "GET", "/invocations/01ZZZZZZZZZZZZZZZZZZZZZZZZ", nil, 404},
		{"async: unknown function", "POST", "/invoke/nope/async", `{}`, 404},
		{"async: callback not allowed", "POST", "/invoke/fn/async", `{"callback_url": "http://example.com/hook"}`, 400},
		{"callback on a sync call", "POST", "/invoke/fn", `{"callback_url": "http://example.com/hook"}`, 400},
		{"async: bad body", "POST", "/invoke/fn/async", `{"event": `, 400},
	} {
		before := e.head()
		if code := e.do(tc.method, tc.path, tc.body, nil); code != tc.code {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.code)
		}
		if e.head() != before {
			t.Errorf("%s: wrote to the log", tc.name)
		}
	}
}

func upload(t *testing.T, e *api, field string, data []byte) (int, map[string]any) {
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

// testUploadErrors sends uploads the API itself must refuse, before the
// engine sees them.
func testUploadErrors(t *testing.T, e *api, maxImageBytes int) {
	before := e.head()
	if code, out := upload(t, e, "image", []byte("not a tar at all")); code != 400 {
		t.Errorf("garbage upload: %d %v", code, out)
	}
	if code, _ := upload(t, e, "file", makeSaveTar()); code != 400 {
		t.Errorf("upload without the image field: %d", code)
	}
	if code, _ := upload(t, e, "image", nil); code != 400 {
		t.Errorf("empty upload: %d", code)
	}
	if code := e.do("POST", "/images", `{"json": true}`, nil); code != 400 {
		t.Errorf("upload that is not multipart: %d", code)
	}
	if code, _ := upload(t, e, "image", make([]byte, maxImageBytes+1<<20)); code != 413 {
		t.Errorf("upload over the bound: %d", code)
	}
	if e.head() != before {
		t.Errorf("failed uploads wrote to the log")
	}
}

// authToken is the token of the servers testAuth runs against.
const authToken = "s3cret-token-for-tests"

// testAuth sends requests with and without authToken to a server that
// requires it.
func testAuth(t *testing.T, e *api, image string) {
	const token = authToken
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

// testHostile sends requests meant to hurt; each must be refused with a
// JSON error and write nothing. e has a function "fn".
func testHostile(t *testing.T, e *api) {
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

// makeSaveTar is the smallest archive that passes the upload check.
func makeSaveTar() []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Typeflag: tar.TypeReg, Size: 2, Mode: 0o644})
	tw.Write([]byte("[]"))
	tw.Close()
	return buf.Bytes()
}
