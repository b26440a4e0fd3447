package http

import (
	"net/http/httptest"
	"strings"
	"testing"
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
