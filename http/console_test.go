package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/internal/logtest"
	"github.com/minilambda/minilambda/projections"
	"github.com/oklog/ulid/v2"
)

func get(t *testing.T, srv *httptest.Server, path, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestConsoleFiles: the console's files are served without the token
// (they hold no data), each with the strict policy, while the API still
// wants it.
func TestConsoleFiles(t *testing.T) {
	srv := httptest.NewServer(New(Options{Token: "tok"}))
	defer srv.Close()

	resp, _ := get(t, srv, "/", "")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for path, want := range map[string]string{
		"/ui/":            "text/html",
		"/ui/app.js":      "text/javascript",
		"/ui/style.css":   "text/css",
		"/ui/favicon.svg": "image/svg+xml",
	} {
		resp, body := get(t, srv, path, "")
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), want) || body == "" {
			t.Errorf("GET %s: %d %q", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if csp != consolePolicy || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
	}
	if resp, _ := get(t, srv, "/ui/nothing.js", ""); resp.StatusCode != 404 {
		t.Errorf("a missing file: %d", resp.StatusCode)
	}
	resp, body := get(t, srv, "/ui/config.json", "")
	if resp.StatusCode != 200 || strings.TrimSpace(body) != `{"token_required":true}` {
		t.Errorf("config: %d %s", resp.StatusCode, body)
	}
	resp, body = get(t, srv, "/ui/schema.json", "")
	var schema consoleSchema
	if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") != consolePolicy || json.Unmarshal([]byte(body), &schema) != nil ||
		schema.Events["InvocationQueued"].Type != projections.TypeInvocationQueued {
		t.Errorf("schema: %d %.200s", resp.StatusCode, body)
	}
	if resp, _ := get(t, srv, "/functions", ""); resp.StatusCode != 401 {
		t.Errorf("the API without the token: %d", resp.StatusCode)
	}
	if resp, _ := get(t, srv, "/ui/", "wrong"); resp.StatusCode != 200 {
		t.Errorf("the console with a wrong token: %d", resp.StatusCode)
	}
}

// TestConsoleNeverWritesMarkup: the console builds the page from nodes
// and text. The policy's Trusted Types make an HTML sink throw in the
// browser; this finds one before it ships.
func TestConsoleNeverWritesMarkup(t *testing.T) {
	sinks := regexp.MustCompile(`\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|\beval\(|new Function\(|setAttribute\(\s*['"](style|on)`)
	inline := regexp.MustCompile(`<script>|<script [^>]*>[^<]|\son[a-z]+=|style=`)
	err := fs.WalkDir(consoleFiles, "console", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := consoleFiles.ReadFile(path)
		if err != nil {
			return err
		}
		switch filepath.Ext(path) {
		case ".js":
			if m := sinks.Find(b); m != nil {
				t.Errorf("%s writes markup or code from a string: %s", path, m)
			}
		case ".html":
			if m := inline.Find(b); m != nil {
				t.Errorf("%s has inline script or style: %s", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func appendEvents(t *testing.T, l *eventlog.Log, events ...eventlog.Event) {
	t.Helper()
	if _, err := l.Append(context.Background(), events...); err != nil {
		t.Fatal(err)
	}
}

// TestInvocationTimeline: an invocation's events, and only its, from its
// queued event to its callback's delivery; one still running has what it
// has so far.
func TestInvocationTimeline(t *testing.T) {
	l, srv, _ := streamServer(t, filepath.Join(t.TempDir(), "events.db"))
	register(t, l, "fn1", "hello")
	idA, idB, idC := ulid.Make().String(), ulid.Make().String(), ulid.Make().String()
	a, b := logtest.Lifecycle("fn1", idA), logtest.Lifecycle("fn1", idB)
	callback, err := projections.NewInvocationCallback("fn1", idA, projections.InvocationCallback{URL: "http://example.test/done", Attempts: 1, StatusCode: 200})
	if err != nil {
		t.Fatal(err)
	}
	// inv-a asks for a callback: its queued event says so.
	var q map[string]any
	json.Unmarshal(a[0].Data, &q)
	q["callback_url"] = "http://example.test/done"
	a[0].Data, _ = json.Marshal(q)
	appendEvents(t, l, a[0], b[0], a[1], b[1])
	appendEvents(t, l, a[2])
	register(t, l, "fn2", "other")
	appendEvents(t, l, b[2], callback)
	running := logtest.Lifecycle("fn1", idC)[:2]
	appendEvents(t, l, running...)

	for id, want := range map[string][]string{
		idA: {"invocation.queued", "invocation.started", "invocation.completed", "invocation.callback"},
		idB: {"invocation.queued", "invocation.started", "invocation.completed"},
		idC: {"invocation.queued", "invocation.started"},
	} {
		resp, body := get(t, srv, "/invocations/"+id+"/events", "tok")
		var tl invocationTimeline
		if err := json.Unmarshal([]byte(body), &tl); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", id, resp.StatusCode, body)
		}
		var got []string
		for _, e := range tl.Events {
			if e.InvocationID != id {
				t.Errorf("%s's timeline holds seq %d of %s", id, e.Seq, e.InvocationID)
			}
			got = append(got, e.Type)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") || tl.InvocationID != id {
			t.Errorf("%s: %v, want %v", id, got, want)
		}
	}
	// The list's time bounds: all three were created just now.
	_, body := get(t, srv, "/invocations?after="+time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano), "tok")
	var page invocationPage
	if json.Unmarshal([]byte(body), &page); len(page.Invocations) != 3 {
		t.Errorf("after a minute ago: %s", body)
	}
	if _, body := get(t, srv, "/invocations?before="+time.Now().Add(-time.Minute).UTC().Format(time.RFC3339), "tok"); !strings.Contains(body, `"invocations":[]`) {
		t.Errorf("before a minute ago: %s", body)
	}
	if resp, body := get(t, srv, "/invocations?before=yesterday", "tok"); resp.StatusCode != 400 || !strings.Contains(body, "RFC 3339") {
		t.Errorf("a bad time: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, srv, "/invocations/nope/events", "tok"); resp.StatusCode != 404 {
		t.Errorf("unknown invocation: %d", resp.StatusCode)
	}
	if resp, _ := get(t, srv, "/invocations/a%20b/events", "tok"); resp.StatusCode != 400 {
		t.Errorf("bad id: %d", resp.StatusCode)
	}
	if resp, _ := get(t, srv, "/invocations/"+idA+"/events", ""); resp.StatusCode != 401 {
		t.Errorf("without the token: %d", resp.StatusCode)
	}
}

// verifier is an Audit whose verification is told what to answer, and
// can be held while it runs.
type verifier struct {
	err     error
	started chan struct{}
	release chan struct{}
}

func (v *verifier) Head() (uint64, eventlog.Hash) { return 7, eventlog.Hash{0xab} }

func (v *verifier) VerifyEvents(ctx context.Context, _ func(done, total uint64)) (eventlog.Summary, error) {
	if v.started != nil {
		close(v.started)
		<-v.release
	}
	return eventlog.Summary{Events: 7, Head: eventlog.Hash{0xab}}, v.err
}

func TestAuditEndpoints(t *testing.T) {
	l, _, _ := streamServer(t, filepath.Join(t.TempDir(), "events.db"))
	register(t, l, "fn1", "hello")
	appendEvents(t, l, logtest.Lifecycle("fn1", "inv-a")...)
	srv := httptest.NewServer(New(Options{Views: projections.NewViews(l), Audit: l}))
	defer srv.Close()

	_, body := get(t, srv, "/audit", "")
	seq, hash := l.Head()
	var head auditHeadBody
	if json.Unmarshal([]byte(body), &head); head.HeadSeq != seq || head.HeadHash != hash.String() || seq != 4 {
		t.Errorf("GET /audit: %s, head %d %s", body, seq, hash)
	}
	verify := func(srv *httptest.Server) (int, verification) {
		resp, err := http.Post(srv.URL+"/audit/verify", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v verification
		json.NewDecoder(resp.Body).Decode(&v)
		return resp.StatusCode, v
	}
	if code, v := verify(srv); code != 200 || !v.OK || v.Events != 4 || v.HeadHash != hash.String() || v.Error != "" {
		t.Errorf("verify: %d %+v", code, v)
	}

	// A broken chain is a result, not a failed request; one verification
	// runs at a time.
	bad := &verifier{err: fmt.Errorf("%w: seq 3: the hash chain is broken", eventlog.ErrCorrupt), started: make(chan struct{}), release: make(chan struct{})}
	srv2 := httptest.NewServer(New(Options{Audit: bad}))
	defer srv2.Close()
	done := make(chan verification)
	go func() { _, v := verify(srv2); done <- v }()
	<-bad.started
	if code, _ := verify(srv2); code != http.StatusTooManyRequests {
		t.Errorf("a second verification at once: %d", code)
	}
	close(bad.release)
	select {
	case v := <-done:
		if v.OK || !strings.Contains(v.Error, "hash chain is broken") || v.HeadHash != "" {
			t.Errorf("a failed verification: %+v", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the verification did not answer")
	}

	// A log that cannot be read is the request's failure, not a finding.
	broken := httptest.NewServer(New(Options{Audit: &verifier{err: errors.New("read events.db: input/output error")}}))
	defer broken.Close()
	if code, v := verify(broken); code != http.StatusInternalServerError || v.OK {
		t.Errorf("an unreadable log: %d %+v", code, v)
	}
}

// TestConsoleNamesEventTypesFromTheSchema: the console's files hold no
// event type string, nor a group's prefix ('invocation.'): it names types
// through schema.json (typeOf('InvocationQueued')), each name one the
// schema has, and what describe reads of a type's payload is a member of
// it.
func TestConsoleNamesEventTypesFromTheSchema(t *testing.T) {
	schema := projections.Schema()
	typeOf := regexp.MustCompile(`typeOf\('(\w+)'\)`)
	err := fs.WalkDir(consoleFiles, "console", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".js" {
			return err
		}
		b, err := consoleFiles.ReadFile(path)
		if err != nil {
			return err
		}
		groups := map[string]bool{}
		for name, e := range schema {
			if strings.Contains(string(b), e.Type) {
				t.Errorf("%s holds the event type %q: name it typeOf('%s')", path, e.Type, name)
			}
			group, _, _ := strings.Cut(e.Type, ".")
			groups[group] = true
		}
		for group := range groups {
			if m := regexp.MustCompile("['\"`]" + regexp.QuoteMeta(group) + `\.`).Find(b); m != nil {
				t.Errorf("%s holds the prefix of the event types %s...: %s", path, group, m)
			}
		}
		for _, m := range typeOf.FindAllSubmatch(b, -1) {
			if _, ok := schema[string(m[1])]; !ok {
				t.Errorf("%s names event type %s, which the schema has not", path, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// describe's cases: each run of case lines shares the body after it.
	js, err := consoleFiles.ReadFile("console/invocations.js")
	if err != nil {
		t.Fatal(err)
	}
	body := string(js)
	start := strings.Index(body, "function describe(")
	end := strings.Index(body[start:], "\n}\n")
	if start < 0 || end < 0 {
		t.Fatal("invocations.js has no describe function")
	}
	member := regexp.MustCompile(`\bd\.(\w+)`)
	var cases []string
	inCases, checked := false, 0
	for _, line := range strings.Split(body[start:start+end], "\n") {
		if m := typeOf.FindStringSubmatch(line); m != nil && strings.Contains(line, "case ") {
			if !inCases {
				cases = nil
			}
			cases, inCases = append(cases, m[1]), true
			continue
		}
		inCases = false
		for _, m := range member.FindAllStringSubmatch(line, -1) {
			for _, c := range cases {
				checked++
				if !slices.Contains(schema[c].Members, m[1]) {
					t.Errorf("describe reads %s's %q, which is not among its members %v", c, m[1], schema[c].Members)
				}
			}
		}
	}
	if checked < 20 {
		t.Errorf("checked %d member reads of describe: did its shape change?", checked)
	}

	// What the live view reads of any event's payload is some type's.
	live, err := consoleFiles.ReadFile("console/live.js")
	if err != nil {
		t.Fatal(err)
	}
	reads := regexp.MustCompile(`\be\.data\.(\w+)`).FindAllSubmatch(live, -1)
	if len(reads) == 0 {
		t.Error("live.js reads no payload member: did its shape change?")
	}
	for _, m := range reads {
		if !slices.ContainsFunc(slices.Collect(maps.Values(schema)), func(e projections.EventSchema) bool {
			return slices.Contains(e.Members, string(m[1]))
		}) {
			t.Errorf("live.js reads the payload member %q, which no event type has", m[1])
		}
	}
}
