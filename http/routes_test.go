package http_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	lambdahttp "github.com/minilambda/minilambda/http"
)

// TestRouteGroups checks who may call what: each route group's auth, and
// the answers to the paths and methods no route of a group has, which
// follow the group's rule (the native API's, the token, for any path no
// group owns). A refusal (401, 403) closes the connection and says nothing
// of the path's methods. Before route groups, auth was decided from path
// prefixes; a matrix of 4212 requests answered byte for byte the same
// before and after the change, and these are its landmarks.
func TestRouteGroups(t *testing.T) {
	const token = "tok"
	type tc struct {
		method, path, auth string
		status             int
		// www and allow are the WWW-Authenticate and Allow wanted; body is
		// a part of the body wanted.
		www, allow, amz, body string
	}
	bearer := `Bearer realm="minilambda"`
	refusal := "missing or wrong API token"
	cases := func(openMetrics bool) []tc {
		metrics := tc{"GET", "/metrics", "", 401, bearer, "", "", refusal}
		metricsPost := tc{"POST", "/metrics", "", 401, bearer, "", "", refusal}
		if openMetrics {
			metrics = tc{"GET", "/metrics", "", 200, "", "", "", ""}
			metricsPost = tc{"POST", "/metrics", "", 405, "", "GET, OPTIONS", "", "POST is not allowed on /metrics"}
		}
		return []tc{
			// The native API: the token, checked in constant time.
			{"GET", "/functions", "", 401, bearer, "", "", refusal},
			{"GET", "/functions", "Bearer wrong", 401, bearer, "", "", refusal},
			{"GET", "/functions", "Bearer " + token, 200, "", "", "", `"name":"open"`},
			{"POST", "/functions/open/versions", "", 401, bearer, "", "", refusal},
			{"GET", "/functions/open/aliases/a", "", 401, bearer, "", "", refusal},
			{"POST", "/invoke/open", "", 401, bearer, "", "", refusal},
			{"GET", "/images", "", 401, bearer, "", "", refusal},
			metrics, metricsPost,
			// Paths no group owns are the native API's.
			{"GET", "/nope", "", 401, bearer, "", "", refusal},
			{"GET", "/nope", "Bearer " + token, 404, "", "", "", "no such path: /nope"},
			{"PATCH", "/functions", "", 401, bearer, "", "", refusal},
			{"PATCH", "/functions", "Bearer " + token, 405, "", "GET, OPTIONS, POST", "", "PATCH is not allowed on /functions"},
			{"GET", "/hooks", "", 401, bearer, "", "", refusal},
			{"GET", "/2015-03-31", "", 401, bearer, "", "", refusal},
			// Probes and the console's files: open, GET only.
			{"GET", "/healthz", "", 200, "", "", "", `"status":"ok"`},
			{"GET", "/health", "Bearer wrong", 200, "", "", "", `"status":"ok"`},
			{"POST", "/healthz", "", 405, "", "GET, OPTIONS", "", "POST is not allowed on /healthz"},
			{"GET", "/", "", 302, "", "", "", ""},
			{"GET", "/ui", "", 302, "", "", "", ""},
			{"GET", "/ui/config.json", "", 200, "", "", "", `{"token_required":true}`},
			{"GET", "/ui/", "", 200, "", "", "", "<!doctype html>"},
			{"POST", "/ui/config.json", "", 401, bearer, "", "", refusal},
			{"DELETE", "/", "", 401, bearer, "", "", refusal},
			// The Lambda API, every date prefix of it: SigV4, in Lambda's
			// shape, before anything is said of its paths and methods
			// (signed, they are UnknownOperationException, 404).
			{"GET", "/2015-03-31/functions/open", "", 403, "", "", "InvalidSignatureException", `"Type":"User"`},
			{"GET", "/2015-03-31/functions/open", "Bearer " + token, 403, "", "", "InvalidSignatureException", "AWS4-HMAC-SHA256"},
			{"GET", "/2015-03-31/nope", "", 403, "", "", "InvalidSignatureException", "AWS4-HMAC-SHA256"},
			{"GET", "/2017-03-31/functions", "", 403, "", "", "InvalidSignatureException", "AWS4-HMAC-SHA256"},
			{"GET", "/2018-10-31/layers", "Bearer " + token, 403, "", "", "InvalidSignatureException", "AWS4-HMAC-SHA256"},
			{"POST", "/2015-03-31/functions/open", "", 403, "", "", "InvalidSignatureException", "AWS4-HMAC-SHA256"},
			// Hooks: their trigger's rule, in a function URL's shape; their
			// router's own 404 and 405.
			{"POST", "/hooks/open", "", 200, "", "", "", `"version":"2.0"`},
			{"GET", "/hooks/open/x/y", "", 200, "", "", "", `"rawPath":"/x/y"`},
			{"GET", "/hooks/tokfn", "", 401, bearer, "", "", `{"message":"Unauthorized"}`},
			{"GET", "/hooks/tokfn", "Bearer " + token, 200, "", "", "", `"version":"2.0"`},
			{"POST", "/hooks/mac", "", 401, "", "", "", `{"message":"Unauthorized: no X-Sig signature"}`},
			{"GET", "/hooks/plain", "", 404, "", "", "", `{"message":"Not Found"}`},
			{"GET", "/hooks/none", "Bearer " + token, 404, "", "", "", `{"message":"Not Found"}`},
			{"GET", "/hooks/", "", 404, "", "", "", "no such path: /hooks/"},
			{"TRACE", "/hooks/open", "", 405, "", "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT", "", "TRACE is not allowed"},
		}
	}
	for _, openMetrics := range []bool{false, true} {
		f := newFake()
		e, _ := fakeAPIOver(t, f, lambdahttp.Options{Token: token, Versions: f, OpenMetrics: openMetrics,
			AWSAccessKeyID: "AKID", AWSSecretAccessKey: "secret"})
		for _, fn := range []string{
			`{"name":"open","image":"img","http_trigger":{"auth":"none"}}`,
			`{"name":"tokfn","image":"img","http_trigger":{"auth":"token"}}`,
			`{"name":"mac","image":"img","http_trigger":{"auth":"hmac","hmac_secret":"0123456789abcdef0123456789abcdef","hmac_header":"X-Sig"}}`,
			`{"name":"plain","image":"img"}`,
		} {
			req, _ := http.NewRequest("POST", e.srv.URL+"/functions", strings.NewReader(fn))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("register %s: %d", fn, resp.StatusCode)
			}
		}
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		for _, c := range cases(openMetrics) {
			req, _ := http.NewRequest(c.method, e.srv.URL+c.path, strings.NewReader(`{}`))
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", c.method, c.path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			h := resp.Header
			// A refusal closes the connection, as does any error answer to
			// a stranger, and a hook that is not there.
			closed := c.status == 401 || c.status == 403 || c.body == `{"message":"Not Found"}` ||
				c.auth != "Bearer "+token && c.status >= 400
			if resp.StatusCode != c.status || h.Get("WWW-Authenticate") != c.www || h.Get("Allow") != c.allow ||
				h.Get("X-Amzn-Errortype") != c.amz || !strings.Contains(string(body), c.body) || resp.Close != closed {
				t.Errorf("open metrics %v: %s %s (%q): %d, WWW-Authenticate %q, Allow %q, X-Amzn-Errortype %q, closed %v: %.200s",
					openMetrics, c.method, c.path, c.auth, resp.StatusCode, h.Get("WWW-Authenticate"), h.Get("Allow"),
					h.Get("X-Amzn-Errortype"), resp.Close, body)
			}
		}
	}
}

// TestProfiling checks that Go's profiles are served only when the
// operator turns them on, and then only with the token.
func TestProfiling(t *testing.T) {
	const token = "s3cret"
	for _, on := range []bool{false, true} {
		e, _ := fakeAPIOver(t, newFake(), lambdahttp.Options{Token: token, Profiling: on})
		for _, c := range []struct {
			path, auth string
			status     int
			body       string
		}{
			{"/debug/pprof/", "", 401, ""},
			{"/debug/pprof/", "Bearer " + token, map[bool]int{false: 404, true: 200}[on], map[bool]string{false: "no such path", true: "goroutine"}[on]},
			{"/debug/pprof/goroutine?debug=1", "Bearer " + token, map[bool]int{false: 404, true: 200}[on], map[bool]string{false: "no such path", true: "goroutine profile: total"}[on]},
			{"/debug/pprof/cmdline", "Bearer " + token, map[bool]int{false: 404, true: 200}[on], ""},
		} {
			req, _ := http.NewRequest("GET", e.srv.URL+c.path, nil)
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || !strings.Contains(string(body), c.body) {
				t.Errorf("profiling %v: GET %s (%q): %d %.200s; want %d with %q", on, c.path, c.auth, resp.StatusCode, body, c.status, c.body)
			}
		}
	}
}
