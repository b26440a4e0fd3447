package http

import (
	"context"
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
