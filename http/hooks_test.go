package http

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

func TestHookResponseOf(t *testing.T) {
	for _, c := range []struct {
		result, body, ctype string
		status              int
		ok                  bool
	}{
		{`{"statusCode": 204}`, "", "application/json", 204, true},
		{`{"statusCode": 200, "body": "aGk=", "isBase64Encoded": true}`, "hi", "application/json", 200, true},
		{`{"message": "hi"}` + "\n", `{"message": "hi"}` + "\n", "application/json", 200, true},
		{`not json`, `not json`, "text/plain; charset=utf-8", 200, true},
		{`{"statusCode": 99}`, "", "", 0, false},
		{`{"statusCode": "200"}`, "", "", 0, false},
		{`{"statusCode": 200, "body": "%%", "isBase64Encoded": true}`, "", "", 0, false},
	} {
		res, ok := hookResponseOf(c.result)
		if ok != c.ok || ok && (res.status != c.status || string(res.body) != c.body || res.contentType != c.ctype) {
			t.Errorf("%s: %+v %v", c.result, res, ok)
		}
	}
}

func TestHookEventOf(t *testing.T) {
	r := httptest.NewRequest("POST", "/hooks/f/a/b?q=1&q=2", strings.NewReader(""))
	r.Header.Set("Authorization", "Bearer t")
	r.Header.Set("Cookie", "x=1; y=2")
	e := hookEventOf(r, "/a/b", []byte{0xff}, true)
	if e.RawPath != "/a/b" || e.Headers["authorization"] != "" || len(e.Cookies) != 2 || e.QueryStringParameters["q"] != "1,2" ||
		!e.IsBase64Encoded || e.Body != "/w==" || e.Headers["cookie"] != "" {
		t.Errorf("event %+v", e)
	}
	if e := hookEventOf(r, "", nil, false); e.Headers["authorization"] != "Bearer t" || e.RawPath != "/" {
		t.Errorf("a public hook passes the header on, and the root path: %+v", e)
	}
}

// hookViews and hookInvoker serve one function with an HTTP trigger,
// whose invocation answers with result.
type hookViews struct {
	Views
	f projections.Function
}

func (v hookViews) Function(string) (projections.Function, error) { return v.f, nil }

type hookInvoker struct {
	Invoker
	result string
}

func (i hookInvoker) Invoke(context.Context, string, function.Request) (projections.Invocation, error) {
	return projections.Invocation{InvocationID: "inv", Status: projections.StatusCompleted, Result: i.result}, nil
}

// TestHookPagesAreSandboxed: a function's page cannot act as the origin
// the console shares, whatever headers the function sends.
func TestHookPagesAreSandboxed(t *testing.T) {
	result := `{"statusCode": 200, "headers": {"Content-Type": "text/html", "Service-Worker-Allowed": "/", "Clear-Site-Data": "\"*\"", "Content-Security-Policy": "img-src 'self'"}, "body": "<script>1</script>"}`
	srv := httptest.NewServer(New(Options{
		Views:   hookViews{f: projections.Function{ID: "fn", Spec: function.Spec{Name: "page", HTTPTrigger: &function.HTTPTrigger{Auth: function.TriggerAuthNone}}}},
		Invoker: hookInvoker{result: result},
		Token:   "tok",
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/hooks/page")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Values("Content-Security-Policy")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html" ||
		len(csp) != 2 || csp[0] != "img-src 'self'" || csp[1] != hookSandbox {
		t.Errorf("%d %q, CSP %q", resp.StatusCode, resp.Header.Get("Content-Type"), csp)
	}
	for _, h := range []string{"Service-Worker-Allowed", "Clear-Site-Data"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("%s: %q passed through", h, v)
		}
	}
}

// eventInvoker records the event of each invocation and answers it.
type eventInvoker struct {
	Invoker
	events chan []byte
}

func (i eventInvoker) Invoke(_ context.Context, _ string, req function.Request) (projections.Invocation, error) {
	i.events <- req.Event
	return projections.Invocation{InvocationID: "inv", Status: projections.StatusCompleted, Result: `{"statusCode": 204}`}, nil
}

// hookViewsOf serves the functions fs by name.
type hookViewsOf struct {
	Views
	fs map[string]projections.Function
}

func (v hookViewsOf) Function(ref string) (projections.Function, error) {
	if f, ok := v.fs[ref]; ok {
		return f, nil
	}
	return projections.Function{}, projections.ErrNotFound
}

// TestHookEventsCarryNoServerToken calls hooks of each auth with the
// server's token in Authorization, as a client that sends it on every
// request does: no function sees it, whatever its trigger. Any other
// Authorization (another bearer, a signature in that header) is the
// caller's own and passes on.
func TestHookEventsCarryNoServerToken(t *testing.T) {
	const secret = "0123456789abcdef"
	trigger := func(name string, tr function.HTTPTrigger) projections.Function {
		return projections.Function{ID: name, Spec: function.Spec{Name: name, HTTPTrigger: &tr}}
	}
	inv := eventInvoker{events: make(chan []byte, 1)}
	srv := httptest.NewServer(New(Options{
		Views: hookViewsOf{fs: map[string]projections.Function{
			"open":    trigger("open", function.HTTPTrigger{Auth: function.TriggerAuthNone}),
			"signed":  trigger("signed", function.HTTPTrigger{Auth: function.TriggerAuthHMAC, HMACSecret: secret, HMACHeader: "X-Hub-Signature-256"}),
			"private": trigger("private", function.HTTPTrigger{Auth: function.TriggerAuthToken}),
			"inauth":  trigger("inauth", function.HTTPTrigger{Auth: function.TriggerAuthHMAC, HMACSecret: secret, HMACHeader: "Authorization"}),
		}},
		Invoker: inv,
		Token:   "tok",
	}))
	defer srv.Close()
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("payload"))
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	for _, c := range []struct {
		hook    string
		headers map[string][]string
		want    string // the authorization the function sees
	}{
		{"open", map[string][]string{"Authorization": {"Bearer tok"}}, ""},
		{"open", map[string][]string{"Authorization": {"bearer  tok"}}, ""},
		{"open", map[string][]string{"Authorization": {"Basic eDp5", "Bearer tok"}}, ""},
		{"signed", map[string][]string{"Authorization": {"Bearer tok"}, "X-Hub-Signature-256": {sig}}, ""},
		{"private", map[string][]string{"Authorization": {"Bearer tok"}}, ""},
		{"open", map[string][]string{"Authorization": {"Bearer someone-elses"}}, "Bearer someone-elses"},
		{"open", map[string][]string{"Authorization": {"Bearer tok2"}}, "Bearer tok2"},
		{"inauth", map[string][]string{"Authorization": {sig}}, sig},
	} {
		req, _ := http.NewRequest("POST", srv.URL+"/hooks/"+c.hook, strings.NewReader("payload"))
		req.Header = c.headers
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 {
			t.Errorf("%s %v: %d", c.hook, c.headers, resp.StatusCode)
			continue
		}
		var e hookEvent
		if err := json.Unmarshal(<-inv.events, &e); err != nil {
			t.Fatal(err)
		}
		if got, ok := e.Headers["authorization"]; got != c.want || ok != (c.want != "") {
			t.Errorf("%s %v: the function saw authorization %q", c.hook, c.headers, got)
		}
	}
}

// TestHookEventKeepsWhatWasSent: as a Lambda function URL's event,
// rawPath is the path as sent (escaped), rawQueryString the query as
// sent, a query pair that does not decode is kept as sent, and the
// headers include host.
func TestHookEventKeepsWhatWasSent(t *testing.T) {
	r := httptest.NewRequest("GET", "http://hooks.example:8300/hooks/f/a%2Fb/%7Ec%20d/?y=%zz&x=1&x=%32&a%20b=c+d&s=1;2&&=e&flag", nil)
	e := hookEventOf(r, "/a/b/~c d/", nil, false)
	want := map[string]string{"y": "%zz", "x": "1,2", "a b": "c d", "s": "1;2", "": "e", "flag": ""}
	if e.RawPath != "/a%2Fb/%7Ec%20d/" || e.RequestContext.HTTP.Path != "/a/b/~c d/" ||
		e.RawQueryString != "y=%zz&x=1&x=%32&a%20b=c+d&s=1;2&&=e&flag" || !maps.Equal(e.QueryStringParameters, want) ||
		e.Headers["host"] != "hooks.example:8300" {
		t.Errorf("event %+v", e)
	}
	for target, rest := range map[string]string{
		"/hooks/f":           "",
		"/hooks/f/":          "/",
		"/hooks/%66/x%3Fy":   "/x?y",
		"/hooks/f/caf%C3%A9": "/café",
		"/hooks/a%2Fb/c":     "/b/c", // the router splits the function's segment at its %2F
	} {
		want := map[string]string{"/hooks/f": "/", "/hooks/f/": "/", "/hooks/%66/x%3Fy": "/x%3Fy",
			"/hooks/f/caf%C3%A9": "/caf%C3%A9", "/hooks/a%2Fb/c": "/b/c"}[target]
		if got := hookRawPath(httptest.NewRequest("GET", target, nil), rest); got != want {
			t.Errorf("%s: rawPath %q, want %q", target, got, want)
		}
	}
	if e := hookEventOf(httptest.NewRequest("GET", "/hooks/f", nil), "", nil, false); e.QueryStringParameters != nil || e.RawQueryString != "" {
		t.Errorf("no query: %+v", e)
	}
}
