package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/runner/agent"
	"github.com/minilambda/minilambda/runner/engine"
)

func TestInvocation(t *testing.T) {
	h, eng := newHost(t, agent.Options{Region: "eu-west-3"})
	c := start(t, h, eng)
	c.connect(logsFor(map[int]string{1: "START\nworking on it\n"}))

	const timeout = 30 * time.Second
	event := []byte(`{"name":"world"}`)
	before := time.Now()
	d := c.goDo("inv-1", event, timeout)
	r := c.next()
	after := time.Now()
	wantEvent(t, r, "inv-1", event)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q; want application/json", ct)
	}
	deadline, err := strconv.ParseInt(r.header.Get("Lambda-Runtime-Deadline-Ms"), 10, 64)
	if err != nil {
		t.Fatalf("Lambda-Runtime-Deadline-Ms %q: %v", r.header.Get("Lambda-Runtime-Deadline-Ms"), err)
	}
	if lo, hi := before.Add(timeout).UnixMilli(), after.Add(timeout).UnixMilli(); deadline < lo || deadline > hi {
		t.Errorf("Lambda-Runtime-Deadline-Ms %d; want between %d and %d, the call's start plus its timeout", deadline, lo, hi)
	}
	if got, want := r.header.Get("Lambda-Runtime-Invoked-Function-Arn"), "arn:aws:lambda:eu-west-3:000000000000:function:hello"; got != want {
		t.Errorf("Lambda-Runtime-Invoked-Function-Arn %q; want %q", got, want)
	}
	if got := r.header.Get("Lambda-Runtime-Trace-Id"); !strings.HasPrefix(got, "Root=1-") {
		t.Errorf("Lambda-Runtime-Trace-Id %q; want an X-Ray trace header", got)
	}
	// The start is on record before the runtime has the event.
	if got, want := c.startCalls(), []string{"container-1 sha256:digest-of-container-1"}; !slices.Equal(got, want) {
		t.Errorf("onStart calls %q when the runtime had the event; want %q", got, want)
	}
	pending(t, d, "Do before the runtime answers")

	payload := []byte(`{"message":"hello, world"}`)
	wantAccepted(t, c.respond("inv-1", payload))
	got := recv(t, d, "Do")
	if got.err != nil {
		t.Fatalf("Do: %v", got.err)
	}
	res := got.res
	if !bytes.Equal(res.Stdout, payload) {
		t.Errorf("Stdout %q; want the response %q", res.Stdout, payload)
	}
	if string(res.Stderr) != "START\nworking on it\n" || res.StderrTruncated {
		t.Errorf("Stderr %q (truncated %v); want the logs flushed at the response", res.Stderr, res.StderrTruncated)
	}
	if res.FunctionError != nil || res.ExitCode != 0 || res.TimedOut || res.ErrorType() != "" {
		t.Errorf("result %+v; want a success", res)
	}
	if res.ContainerID != "container-1" || res.ImageDigest != "sha256:digest-of-container-1" {
		t.Errorf("container %q, image %q; want the engine's", res.ContainerID, res.ImageDigest)
	}
	if res.InitDuration <= 0 {
		t.Errorf("InitDuration %v on the first invocation; want how long the runtime took to ask", res.InitDuration)
	}
	if res.StartedAt.Before(before) || res.CompletedAt.Before(res.StartedAt) || res.Duration != res.CompletedAt.Sub(res.StartedAt) {
		t.Errorf("started %v, completed %v, duration %v: not in order", res.StartedAt, res.CompletedAt, res.Duration)
	}
	if !c.hot.Alive() {
		t.Error("not Alive after a success")
	}

	// A warm invocation reports no init.
	got = c.invoke("inv-2", []byte(`{}`), []byte(`"two"`))
	if string(got.res.Stdout) != `"two"` || got.res.InitDuration != 0 {
		t.Errorf("second invocation: Stdout %q, InitDuration %v; want \"two\" and none", got.res.Stdout, got.res.InitDuration)
	}
	if n := len(c.startCalls()); n != 2 {
		t.Errorf("%d onStart calls after two invocations", n)
	}
}

// The runtime may ask before the runner has an invocation for it: its
// next waits.
func TestNextWaitsForAnInvocation(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	ctl := c.connect(nil)
	c.invoke("inv-0", nil, nil)
	next := c.goNext()
	// A next after the first flushes the logs written since the last
	// answer before it waits.
	eventually(t, "the runtime's second next flushes", func() bool { return ctl.flushes.Load() == 2 })
	pending(t, next, "next with no invocation")
	d := c.goDo("inv-1", []byte(`[1,2,3]`), wait)
	wantEvent(t, recv(t, next, "next"), "inv-1", []byte(`[1,2,3]`))
	wantAccepted(t, c.respond("inv-1", nil))
	if got := recv(t, d, "Do"); got.err != nil || len(got.res.Stdout) != 0 {
		t.Fatalf("Do: %+v, %v; want an empty response", got.res, got.err)
	}
}

// What the runtime writes before it first asks goes with the first
// invocation, and what it writes between answering one invocation and
// asking for the next goes with none.
func TestLogsGoWithTheInvocation(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	ctl := c.connect(logsFor(map[int]string{
		1: "init logs\nfirst's logs\n", // at the first response
		2: "between the two\n",         // at the second next
		3: "second's logs\n",           // at the second response
	}))

	d := c.goDo("inv-1", []byte(`1`), wait)
	wantEvent(t, c.next(), "inv-1", []byte(`1`))
	if n := ctl.flushes.Load(); n != 0 {
		t.Fatalf("%d flushes before the first invocation; want none: what the runtime wrote so far is the first invocation's", n)
	}
	wantAccepted(t, c.respond("inv-1", []byte(`1`)))
	if got := recv(t, d, "Do"); string(got.res.Stderr) != "init logs\nfirst's logs\n" {
		t.Errorf("first invocation's Stderr %q", got.res.Stderr)
	}

	d = c.goDo("inv-2", []byte(`2`), wait)
	wantEvent(t, c.next(), "inv-2", []byte(`2`))
	if n := ctl.flushes.Load(); n != 2 {
		t.Fatalf("%d flushes when the runtime had its second invocation; want 2", n)
	}
	wantAccepted(t, c.respond("inv-2", []byte(`2`)))
	if got := recv(t, d, "Do"); string(got.res.Stderr) != "second's logs\n" {
		t.Errorf("second invocation's Stderr %q; want only its own logs", got.res.Stderr)
	}
}

func TestDroppedLogsTruncateStderr(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	c.connect(func(int) (string, int64) { return "the first bytes", 1234 })
	got := c.invoke("inv-1", nil, []byte(`{}`))
	if string(got.res.Stderr) != "the first bytes" || !got.res.StderrTruncated {
		t.Errorf("Stderr %q, truncated %v; want the logs kept and truncated", got.res.Stderr, got.res.StderrTruncated)
	}
}

func TestAnswerWithAnotherRequestID(t *testing.T) {
	for _, what := range []string{"response", "error"} {
		t.Run(what, func(t *testing.T) {
			h, eng := newHost(t, agent.Options{})
			c := start(t, h, eng)
			c.connect(nil)
			// Before the runtime has any invocation.
			wantError(t, c.must(c.request(http.MethodPost, "invocation/inv-1/"+what, []byte(`{}`))), http.StatusBadRequest, "InvalidRequestID")

			d := c.goDo("inv-1", []byte(`{}`), wait)
			wantEvent(t, c.next(), "inv-1", []byte(`{}`))
			wantError(t, c.must(c.request(http.MethodPost, "invocation/inv-0/"+what, []byte(`{}`))), http.StatusBadRequest, "InvalidRequestID")
			pending(t, d, "Do after an answer to another id")
			// The invocation is still the runtime's to answer.
			wantAccepted(t, c.must(c.request(http.MethodPost, "invocation/inv-1/"+what, []byte(`{}`))))
			if got := recv(t, d, "Do"); got.err != nil {
				t.Fatalf("Do: %v", got.err)
			}
		})
	}
}

func TestSecondAnswerIsRefused(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	c.connect(nil)
	got := c.invoke("inv-1", nil, []byte(`"first"`))
	wantError(t, c.respond("inv-1", []byte(`"second"`)), http.StatusBadRequest, "InvalidRequestID")
	wantError(t, c.must(c.request(http.MethodPost, "invocation/inv-1/error", []byte(`{}`))), http.StatusBadRequest, "InvalidRequestID")
	if string(got.res.Stdout) != `"first"` {
		t.Errorf("Stdout %q; want the first answer", got.res.Stdout)
	}
	// The session goes on.
	if got := c.invoke("inv-2", nil, []byte(`"again"`)); string(got.res.Stdout) != `"again"` {
		t.Errorf("next invocation's Stdout %q", got.res.Stdout)
	}
}

func TestPayloadSize(t *testing.T) {
	for _, tc := range []struct {
		what   string
		size   int
		status int
		msg    string // the FunctionError's message begins with it
	}{
		{"response", agent.MaxPayload, http.StatusAccepted, ""},
		{"response", agent.MaxPayload + 1, http.StatusRequestEntityTooLarge, "Response payload size exceeded"},
		{"error", agent.MaxPayload + 1, http.StatusRequestEntityTooLarge, "Error payload size exceeded"},
		{"response", agent.MaxPayload + 4<<20, http.StatusRequestEntityTooLarge, "Response payload size exceeded"},
	} {
		t.Run(fmt.Sprintf("%s of %d bytes", tc.what, tc.size), func(t *testing.T) {
			h, eng := newHost(t, agent.Options{})
			c := start(t, h, eng)
			c.connect(logsFor(map[int]string{1: "logs"}))
			d := c.goDo("inv-1", nil, wait)
			wantEvent(t, c.next(), "inv-1", []byte{})
			payload := bytes.Repeat([]byte("x"), tc.size)
			r := c.must(c.request(http.MethodPost, "invocation/inv-1/"+tc.what, payload))
			got := recv(t, d, "Do")
			if got.err != nil {
				t.Fatalf("Do: %v", got.err)
			}
			if string(got.res.Stderr) != "logs" {
				t.Errorf("Stderr %q; want the logs", got.res.Stderr)
			}
			if tc.status == http.StatusAccepted {
				wantAccepted(t, r)
				if !bytes.Equal(got.res.Stdout, payload) || got.res.FunctionError != nil {
					t.Errorf("Stdout of %d bytes, FunctionError %+v; want the payload", len(got.res.Stdout), got.res.FunctionError)
				}
				return
			}
			wantError(t, r, tc.status, "RequestEntityTooLarge")
			fe := got.res.FunctionError
			if fe == nil || fe.Type != "Function.ResponseSizeTooLarge" || !strings.HasPrefix(fe.Message, tc.msg) {
				t.Fatalf("FunctionError %+v; want Function.ResponseSizeTooLarge: %s...", fe, tc.msg)
			}
			var doc lambdaError
			if err := json.Unmarshal(got.res.Stdout, &doc); err != nil || doc.Type != fe.Type || doc.Message == nil || *doc.Message != fe.Message {
				t.Errorf("Stdout %.200q; want the error document of %+v", got.res.Stdout, fe)
			}
			// The invocation has ended: the runtime may take another.
			if got := c.invoke("inv-2", nil, []byte(`"small"`)); string(got.res.Stdout) != `"small"` {
				t.Errorf("next invocation: Stdout %q", got.res.Stdout)
			}
		})
	}
}

func TestErrorAnswer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		header   string // Lambda-Runtime-Function-Error-Type
		wantType string
		wantMsg  string
		stdout   string // empty: the body as it came
	}{
		{
			name: "error document", body: `{"errorMessage":"it broke","errorType":"MyError","stackTrace":["main.go:12"]}`,
			wantType: "MyError", wantMsg: "it broke",
		},
		{
			name: "document's type over the header", body: `{"errorMessage":"it broke","errorType":"MyError"}`, header: "Runtime.Other",
			wantType: "MyError", wantMsg: "it broke",
		},
		{
			name: "type from the header", body: `{"errorMessage":"no type"}`, header: "Function.Custom",
			wantType: "Function.Custom", wantMsg: "no type",
		},
		{
			name: "empty body, type from the header", header: "Runtime.HandlerNotFound",
			wantType: "Runtime.HandlerNotFound", stdout: `{"errorMessage":"","errorType":"Runtime.HandlerNotFound"}`,
		},
		{
			name: "not a document", body: `segmentation fault`,
			wantType: "Unhandled", stdout: `{"errorMessage":"","errorType":"Unhandled"}`,
		},
		{
			name: "a JSON string", body: `"just a string"`,
			wantType: "Unhandled", stdout: `{"errorMessage":"","errorType":"Unhandled"}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, eng := newHost(t, agent.Options{})
			c := start(t, h, eng)
			c.connect(logsFor(map[int]string{1: "Traceback...\n"}))
			d := c.goDo("inv-1", []byte(`{}`), wait)
			wantEvent(t, c.next(), "inv-1", []byte(`{}`))
			var header []string
			if tc.header != "" {
				header = []string{"Lambda-Runtime-Function-Error-Type", tc.header}
			}
			wantAccepted(t, c.must(c.request(http.MethodPost, "invocation/inv-1/error", []byte(tc.body), header...)))
			got := recv(t, d, "Do")
			if got.err != nil {
				t.Fatalf("Do: %v; a function's error is its result", got.err)
			}
			want := &engine.FunctionError{Type: tc.wantType, Message: tc.wantMsg}
			if fe := got.res.FunctionError; fe == nil || *fe != *want {
				t.Errorf("FunctionError %+v; want %+v", fe, want)
			}
			stdout := tc.stdout
			if stdout == "" {
				stdout = tc.body
			}
			if string(got.res.Stdout) != stdout {
				t.Errorf("Stdout %s; want %s", got.res.Stdout, stdout)
			}
			if string(got.res.Stderr) != "Traceback...\n" {
				t.Errorf("Stderr %q; want the logs", got.res.Stderr)
			}
			if got.res.ErrorType() == "" {
				t.Error("ErrorType empty for a function error")
			}
			if !c.hot.Alive() {
				t.Error("a function's error ended the session")
			}
		})
	}
}

// The doc of runtimeError (session.go) says a body that is not Lambda's
// error document is replaced by one; JSON's null is not one.
func TestErrorAnswerNullBodyIsReplaced(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	c.connect(nil)
	d := c.goDo("inv-1", []byte(`{}`), wait)
	wantEvent(t, c.next(), "inv-1", []byte(`{}`))
	wantAccepted(t, c.must(c.request(http.MethodPost, "invocation/inv-1/error", []byte(`null`))))
	got := recv(t, d, "Do")
	if fe := got.res.FunctionError; fe == nil || fe.Type != "Unhandled" {
		t.Fatalf("FunctionError %+v; want Unhandled", fe)
	}
	var doc lambdaError
	if err := json.Unmarshal(got.res.Stdout, &doc); err != nil || doc.Type != "Unhandled" {
		t.Errorf("Stdout %s; want an error document of type Unhandled, as for any other body that is not one", got.res.Stdout)
	}
}

// A response cut short (its connection ended before the body it
// announced) fails the invocation.
func TestTruncatedAnswer(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	c.connect(nil)
	d := c.goDo("inv-1", []byte(`{}`), wait)
	wantEvent(t, c.next(), "inv-1", []byte(`{}`))

	conn, err := c.dialRuntime()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(wait))
	fmt.Fprintf(conn, "POST /2018-06-01/runtime/invocation/inv-1/response HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n\r\n0123456789", agent.RuntimeAPI)
	conn.(interface{ CloseWrite() error }).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	body := new(bytes.Buffer)
	body.ReadFrom(resp.Body)
	wantError(t, reply{status: resp.StatusCode, header: resp.Header, body: body.Bytes()}, http.StatusBadRequest, "TruncatedHTTPRequest")

	got := recv(t, d, "Do")
	if got.err != nil {
		t.Fatalf("Do: %v", got.err)
	}
	if fe := got.res.FunctionError; fe == nil || fe.Type != "Runtime.TruncatedResponse" {
		t.Errorf("FunctionError %+v; want Runtime.TruncatedResponse", fe)
	}
}

func TestInitError(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		header   string
		wantType string
		wantMsg  string
	}{
		{"error document", `{"errorMessage":"Cannot find module 'app'","errorType":"Runtime.ImportModuleError"}`, "", "Runtime.ImportModuleError", "Cannot find module 'app'"},
		{"type from the header", ``, "Runtime.MissingHandler", "Runtime.MissingHandler", ""},
		{"no type at all", `not json`, "", "Runtime.Unknown", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, eng := newHost(t, agent.Options{})
			c := start(t, h, eng)
			c.connect(logsFor(map[int]string{1: "loading app...\n"}))
			d := c.goDo("inv-1", []byte(`{}`), wait)
			var header []string
			if tc.header != "" {
				header = []string{"Lambda-Runtime-Function-Error-Type", tc.header}
			}
			wantAccepted(t, c.must(c.request(http.MethodPost, "init/error", []byte(tc.body), header...)))
			c.notAlive()
			// A runtime that failed its init exits; so does its container.
			c.fake.exit(1, false)

			got := recv(t, d, "Do")
			wantBroken(t, got.err)
			want := &engine.FunctionError{Type: tc.wantType, Message: tc.wantMsg}
			if fe := got.res.FunctionError; fe == nil || *fe != *want {
				t.Errorf("FunctionError %+v; want %+v", fe, want)
			}
			if string(got.res.Stderr) != "loading app...\n" {
				t.Errorf("Stderr %q; want what the runtime wrote in its init", got.res.Stderr)
			}
			if got.res.ExitCode != 1 {
				t.Errorf("ExitCode %d; want the container's 1", got.res.ExitCode)
			}
			if n := len(c.startCalls()); n != 1 {
				t.Errorf("%d onStart calls; want 1: the invocation failed with the init error", n)
			}
			if c.hot.Alive() {
				t.Error("Alive after an init error")
			}
		})
	}
}

func TestInitErrorAfterNext(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	c.connect(nil)
	d := c.goDo("inv-1", []byte(`{}`), wait)
	wantEvent(t, c.next(), "inv-1", []byte(`{}`))
	wantError(t, c.must(c.request(http.MethodPost, "init/error", []byte(`{"errorMessage":"late","errorType":"X"}`))),
		http.StatusForbidden, "InvalidStateTransition")
	if !c.hot.Alive() {
		t.Fatal("a refused init error ended the session")
	}
	wantAccepted(t, c.respond("inv-1", []byte(`"ok"`)))
	if got := recv(t, d, "Do"); got.err != nil || got.res.FunctionError != nil {
		t.Fatalf("Do: %+v, %v; want the response", got.res.FunctionError, got.err)
	}
}

func TestNextWithAnInvocationInHand(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	c.connect(nil)
	d := c.goDo("inv-1", []byte(`{}`), wait)
	wantEvent(t, c.next(), "inv-1", []byte(`{}`))
	wantError(t, c.next(), http.StatusForbidden, "InvalidStateTransition")
	pending(t, d, "Do after a refused next")
	wantAccepted(t, c.respond("inv-1", []byte(`"ok"`)))
	if got := recv(t, d, "Do"); got.err != nil || string(got.res.Stdout) != `"ok"` {
		t.Fatalf("Do: %q, %v", got.res.Stdout, got.err)
	}
}

func TestRoutes(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	c.connect(nil)
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{http.MethodGet, "/", http.StatusNotFound, ""},
		{http.MethodGet, "/2018-06-01/runtime/invocation", http.StatusNotFound, ""},
		{http.MethodPost, "/2018-06-01/runtime/invocation/inv-1", http.StatusNotFound, ""},
		{http.MethodPost, "/2018-06-01/runtime/invocation//response", http.StatusNotFound, ""},
		{http.MethodPost, "/2018-06-01/runtime/invocation/inv-1/result", http.StatusNotFound, ""},
		{http.MethodPost, "/2018-06-01/runtime/invocation/inv-1/response/more", http.StatusNotFound, ""},
		{http.MethodGet, "/2020-01-01/runtime/invocation/next", http.StatusNotFound, ""},
		{http.MethodPost, "/2018-06-01/runtime/init/errors", http.StatusNotFound, ""},
		{http.MethodPost, "/2018-06-01/runtime/invocation/next", http.StatusMethodNotAllowed, http.MethodGet},
		{http.MethodPut, "/2018-06-01/runtime/invocation/next", http.StatusMethodNotAllowed, http.MethodGet},
		{http.MethodGet, "/2018-06-01/runtime/invocation/inv-1/response", http.StatusMethodNotAllowed, http.MethodPost},
		{http.MethodPut, "/2018-06-01/runtime/invocation/inv-1/error", http.StatusMethodNotAllowed, http.MethodPost},
		{http.MethodGet, "/2018-06-01/runtime/init/error", http.StatusMethodNotAllowed, http.MethodPost},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := c.must(c.requestURL(tc.method, tc.path))
			switch tc.status {
			case http.StatusNotFound:
				wantError(t, r, tc.status, "NotFound")
			default:
				wantError(t, r, tc.status, "MethodNotAllowed")
				if got := r.header.Get("Allow"); got != tc.allow {
					t.Errorf("Allow %q; want %q", got, tc.allow)
				}
			}
		})
	}
	// None of it touched the session.
	if got := c.invoke("inv-1", []byte(`{}`), []byte(`"fine"`)); string(got.res.Stdout) != `"fine"` {
		t.Errorf("Stdout %q", got.res.Stdout)
	}
}

// requestURL sends a request for a path outside the API's base.
func (c *ctr) requestURL(method, path string) reply {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+agent.RuntimeAPI+path, nil)
	if err != nil {
		return reply{err: err}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	body := new(bytes.Buffer)
	_, err = body.ReadFrom(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: body.Bytes(), err: err}
}

// The init reports the runtime's exit on the control connection.
func TestExitReport(t *testing.T) {
	for _, tc := range []struct {
		name      string
		given     bool // the runtime has the invocation when it exits
		report    string
		logs      string
		wantType  string
		wantInMsg string
		wantCode  int
		truncated bool
	}{
		{
			name: "exit while holding the invocation", given: true,
			report: `{"code":3}`, logs: "panic: boom\n",
			wantType: "Runtime.ExitError", wantInMsg: "RequestId: inv-1 Error: Runtime exited with error: exit status 3", wantCode: 3,
		},
		{
			name: "killed by a signal", given: true,
			report: `{"code":137,"signal":"killed","dropped":10}`, logs: "fatal error: out of memory\n",
			wantType: "Runtime.ExitError", wantInMsg: "Runtime exited with error: signal: killed", wantCode: 137,
			truncated: true,
		},
		{
			name:     "entrypoint that cannot run",
			report:   `{"code":127,"error":"the image's entrypoint \"/bootstrap\" cannot run: no such file"}`,
			logs:     "",
			wantType: "Runtime.InvalidEntrypoint", wantInMsg: `the image's entrypoint "/bootstrap" cannot run`, wantCode: 127,
		},
		{
			name: "exit before the first next", report: `{"code":2}`, logs: "cannot parse the config\n",
			wantType: "Runtime.ExitError", wantInMsg: "exit status 2", wantCode: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, eng := newHost(t, agent.Options{})
			c := start(t, h, eng)
			ctl := c.connect(nil)
			d := c.goDo("inv-1", []byte(`{}`), wait)
			if tc.given {
				wantEvent(t, c.next(), "inv-1", []byte(`{}`))
			}
			ctl.exit(tc.report, tc.logs)
			c.notAlive()
			// The init exits last: the engine says 1, which the report
			// overrides.
			c.fake.exit(1, false)

			got := recv(t, d, "Do")
			wantBroken(t, got.err)
			res := got.res
			if fe := res.FunctionError; fe == nil || fe.Type != tc.wantType || !strings.Contains(fe.Message, tc.wantInMsg) {
				t.Errorf("FunctionError %+v; want %s with %q", fe, tc.wantType, tc.wantInMsg)
			}
			if res.ExitCode != tc.wantCode {
				t.Errorf("ExitCode %d; want the reported %d", res.ExitCode, tc.wantCode)
			}
			if string(res.Stderr) != tc.logs || res.StderrTruncated != tc.truncated {
				t.Errorf("Stderr %q (truncated %v); want the report's %q (truncated %v)", res.Stderr, res.StderrTruncated, tc.logs, tc.truncated)
			}
			if !strings.Contains(got.err.Error(), tc.wantType) {
				t.Errorf("error %q does not say %s", got.err, tc.wantType)
			}
		})
	}
}

// A runtime that exits after it answered its last invocation ran nothing of
// the next, and what it wrote after its answer is no invocation's.
func TestExitAfterAnswerIsStale(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	ctl := c.connect(nil)
	c.invoke("inv-1", nil, []byte(`1`))
	ctl.exit(`{"code":0}`, "goodbye\n")
	c.notAlive()
	c.fake.exit(0, false)
	got := recv(t, c.goDo("inv-2", nil, wait), "Do")
	if !errors.Is(got.err, engine.ErrHotStale) {
		t.Fatalf("Do: %v; want engine.ErrHotStale: the runtime ended before it took the event", got.err)
	}
	if len(got.res.Stderr) != 0 {
		t.Errorf("Stderr %q; the logs after an answer are no invocation's", got.res.Stderr)
	}
	if n := len(c.startCalls()); n != 1 {
		t.Errorf("%d onStart calls; want only the first invocation's", n)
	}
}

func TestContainerExit(t *testing.T) {
	t.Run("while the runtime holds the invocation", func(t *testing.T) {
		h, eng := newHost(t, agent.Options{})
		c := start(t, h, eng)
		c.connect(nil)
		d := c.goDo("inv-1", []byte(`{}`), wait)
		wantEvent(t, c.next(), "inv-1", []byte(`{}`))
		c.fake.exit(137, true)
		got := recv(t, d, "Do")
		wantBroken(t, got.err)
		if got.res.ExitCode != 137 || !got.res.OOMKilled {
			t.Errorf("ExitCode %d, OOMKilled %v; want the engine's 137 and true", got.res.ExitCode, got.res.OOMKilled)
		}
		if fe := got.res.FunctionError; fe == nil || fe.Type != "Runtime.ExitError" || !strings.Contains(fe.Message, "RequestId: inv-1") {
			t.Errorf("FunctionError %+v; want Runtime.ExitError of inv-1", fe)
		}
		if c.hot.Alive() {
			t.Error("Alive after the container exited")
		}
	})
	t.Run("before the runtime ever asked", func(t *testing.T) {
		h, eng := newHost(t, agent.Options{})
		c := start(t, h, eng)
		c.connect(nil)
		c.fake.exit(2, false)
		c.notAlive()
		got := recv(t, c.goDo("inv-1", []byte(`{}`), wait), "Do")
		wantBroken(t, got.err)
		if got.res.ExitCode != 2 {
			t.Errorf("ExitCode %d; want 2", got.res.ExitCode)
		}
		if n := len(c.startCalls()); n != 1 {
			t.Errorf("%d onStart calls; want 1: the invocation that waited for the runtime failed", n)
		}
		// A runtime that asks now is told the environment is gone.
		wantError(t, c.next(), http.StatusInternalServerError, "InternalServerError")
	})
	t.Run("between invocations", func(t *testing.T) {
		h, eng := newHost(t, agent.Options{})
		c := start(t, h, eng)
		c.connect(nil)
		c.invoke("inv-1", nil, []byte(`1`))
		next := c.goNext()
		c.fake.exit(0, false)
		c.notAlive()
		wantError(t, c.must(recv(t, next, "next")), http.StatusInternalServerError, "InternalServerError")
		got := recv(t, c.goDo("inv-2", nil, wait), "Do")
		if !errors.Is(got.err, engine.ErrHotStale) {
			t.Fatalf("Do: %v; want engine.ErrHotStale", got.err)
		}
		if n := len(c.startCalls()); n != 1 {
			t.Errorf("%d onStart calls; want only the first invocation's", n)
		}
	})
}

func TestDoTimeout(t *testing.T) {
	t.Run("runtime holds the invocation", func(t *testing.T) {
		h, eng := newHost(t, agent.Options{})
		c := start(t, h, eng)
		c.connect(logsFor(map[int]string{1: "still working...\n"}))
		const timeout = 200 * time.Millisecond
		d := c.goDo("inv-1", []byte(`{}`), timeout)
		wantEvent(t, c.next(), "inv-1", []byte(`{}`))
		got := recv(t, d, "Do")
		wantBroken(t, got.err)
		if !got.res.TimedOut || got.res.Duration <= 0 {
			t.Errorf("TimedOut %v, Duration %v; want a timeout", got.res.TimedOut, got.res.Duration)
		}
		// What the runtime wrote until the timeout is the invocation's.
		if string(got.res.Stderr) != "still working...\n" {
			t.Errorf("Stderr %q; want the logs written before the timeout", got.res.Stderr)
		}
		if c.hot.Alive() {
			t.Error("Alive after a timeout")
		}
		// A late answer changes nothing.
		c.respond("inv-1", []byte(`"late"`))
	})
	t.Run("runtime never asks", func(t *testing.T) {
		h, eng := newHost(t, agent.Options{})
		c := start(t, h, eng)
		c.connect(logsFor(map[int]string{1: "warming caches...\n"}))
		started := time.Now()
		got := recv(t, c.goDo("inv-1", []byte(`{}`), 100*time.Millisecond), "Do")
		wantBroken(t, got.err)
		if !got.res.TimedOut {
			t.Error("TimedOut false")
		}
		if since := time.Since(started); since < 100*time.Millisecond {
			t.Errorf("Do returned after %v, before its timeout", since)
		}
		// What the runtime wrote in its start-up, until the timeout, is the
		// invocation's that waited for it.
		if string(got.res.Stderr) != "warming caches...\n" {
			t.Errorf("Stderr %q; want the start-up's logs", got.res.Stderr)
		}
		if n := len(c.startCalls()); n != 1 {
			t.Errorf("%d onStart calls; want 1: the invocation ran, and failed", n)
		}
		if c.hot.Alive() {
			t.Error("Alive after its runtime never asked")
		}
	})
	t.Run("runtime never asks again", func(t *testing.T) {
		h, eng := newHost(t, agent.Options{})
		c := start(t, h, eng)
		ctl := c.connect(logsFor(map[int]string{1: "first's\n", 2: "after the answer\n"}))
		c.invoke("inv-1", nil, nil)
		got := recv(t, c.goDo("inv-2", []byte(`{}`), 100*time.Millisecond), "Do")
		wantBroken(t, got.err)
		// What it wrote after answering belongs to no invocation.
		if !got.res.TimedOut || len(got.res.Stderr) != 0 || ctl.flushes.Load() != 1 {
			t.Errorf("TimedOut %v, Stderr %q after %d flushes; want a timeout with no logs, and no flush for it",
				got.res.TimedOut, got.res.Stderr, ctl.flushes.Load())
		}
	})
}

// A runtime that reports an init error and, instead of exiting, lives on:
// the invocation that waited for it ends with the init error once the
// runtime has had a little time to exit, never past its deadline, nor
// once its caller has gone; the session is over, for the runner to close.
func TestInitErrorAndTheRuntimeLivesOn(t *testing.T) {
	const initError = `{"errorMessage":"cannot load the handler","errorType":"Runtime.ImportModuleError"}`
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		cancel  bool          // the caller goes away after the init error
		within  time.Duration // Do returns within it of the init error
	}{
		{"it is given a moment to exit", wait, false, 4 * time.Second},
		{"never past the deadline", 500 * time.Millisecond, false, time.Second},
		{"nor past the caller", wait, true, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, eng := newHost(t, agent.Options{})
			c := start(t, h, eng)
			c.connect(logsFor(map[int]string{1: "loading the handler\n"}))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			d := make(chan done, 1)
			go func() {
				res, err := c.hot.Do(ctx, "inv-1", []byte(`{}`), tc.timeout, c.onStart)
				d <- done{res, err}
			}()
			wantAccepted(t, c.must(c.request(http.MethodPost, "init/error", []byte(initError))))
			posted := time.Now()
			if tc.cancel {
				c.notAlive()
				cancel()
			}
			got := recv(t, d, "Do")
			if since := time.Since(posted); since > tc.within {
				t.Errorf("Do returned %v after the init error; want it within %v", since, tc.within)
			}
			if c.hot.Alive() {
				t.Error("Alive after an init error")
			}
			if tc.cancel {
				if !errors.Is(got.err, context.Canceled) {
					t.Errorf("Do: %v; want context.Canceled", got.err)
				}
				return
			}
			wantBroken(t, got.err)
			if fe := got.res.FunctionError; fe == nil || fe.Type != "Runtime.ImportModuleError" || fe.Message != "cannot load the handler" {
				t.Errorf("FunctionError %+v; want the init error", fe)
			}
			if got.res.TimedOut || string(got.res.Stderr) != "loading the handler\n" {
				t.Errorf("TimedOut %v, Stderr %q; want the init error with the runtime's logs", got.res.TimedOut, got.res.Stderr)
			}
		})
	}
}

func TestDoCancelled(t *testing.T) {
	t.Run("before the runtime has the invocation", func(t *testing.T) {
		h, eng := newHost(t, agent.Options{})
		c := start(t, h, eng)
		c.connect(nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.hot.Do(ctx, "inv-1", []byte(`{}`), wait, c.onStart)
		if !errors.Is(err, context.Canceled) || errors.Is(err, engine.ErrHotBroken) {
			t.Fatalf("Do: %v; want context.Canceled, the container unharmed", err)
		}
		if !c.hot.Alive() || len(c.startCalls()) != 0 {
			t.Fatalf("Alive %v, %d onStart calls; want the session untouched", c.hot.Alive(), len(c.startCalls()))
		}
		// The next invocation is the runtime's first.
		got := c.invoke("inv-2", []byte(`2`), []byte(`2`))
		if got.res.InitDuration <= 0 {
			t.Errorf("InitDuration %v; want the init reported on the first invocation the runtime had", got.res.InitDuration)
		}
	})
	t.Run("while the runtime has it", func(t *testing.T) {
		h, eng := newHost(t, agent.Options{})
		c := start(t, h, eng)
		c.connect(nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		d := make(chan done, 1)
		go func() {
			res, err := c.hot.Do(ctx, "inv-1", []byte(`{}`), wait, c.onStart)
			d <- done{res, err}
		}()
		wantEvent(t, c.next(), "inv-1", []byte(`{}`))
		cancel()
		got := recv(t, d, "Do")
		if !errors.Is(got.err, context.Canceled) {
			t.Fatalf("Do: %v; want context.Canceled", got.err)
		}
		if c.hot.Alive() {
			t.Error("Alive with an abandoned invocation in its runtime's hands")
		}
	})
}

func TestOnStartError(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	c.connect(nil)
	next := c.goNext()
	refused := errors.New("the log refuses the start")
	got := recv(t, goDoWith(c.hot, "inv-1", []byte(`1`), wait, func(string, string) error { return refused }), "Do")
	if !errors.Is(got.err, refused) {
		t.Fatalf("Do: %v; want onStart's error as it is", got.err)
	}
	pending(t, next, "the runtime's next after a start that could not be recorded")
	if !c.hot.Alive() {
		t.Fatal("not Alive after an onStart error: nothing ran")
	}
	d := c.goDo("inv-2", []byte(`2`), wait)
	wantEvent(t, recv(t, next, "next"), "inv-2", []byte(`2`))
	wantAccepted(t, c.respond("inv-2", []byte(`2`)))
	if got := recv(t, d, "Do"); got.err != nil {
		t.Fatalf("Do: %v", got.err)
	}
}

func TestClose(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	c.connect(nil)
	c.invoke("inv-1", nil, []byte(`1`))
	next := c.goNext()
	dir := filepath.Dir(c.socket)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("socket directory: %v", err)
	}

	c.hot.Close(context.Background())
	if !c.fake.isClosed() {
		t.Error("the container was not closed")
	}
	if c.hot.Alive() {
		t.Error("Alive after Close")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("socket directory after Close: %v; want it removed", err)
	}
	if r := recv(t, next, "next"); r.err == nil && r.status == http.StatusOK {
		t.Errorf("the runtime's waiting next got %d; want its connection closed or an error", r.status)
	}
	if _, err := dialUnix(c.socket); err == nil {
		t.Error("the socket still takes connections after Close")
	}
	c.hot.Close(context.Background()) // twice is fine

	got := recv(t, c.goDo("inv-2", nil, wait), "Do")
	if !errors.Is(got.err, engine.ErrHotStale) && !errors.Is(got.err, engine.ErrHotBroken) {
		t.Errorf("Do after Close: %v; want it refused", got.err)
	}
}
