package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/projections"
)

// TestVersionsOverHTTP publishes a version of a lambda function through
// the REST API, changes the function, and invokes version 1 by path
// (/invoke/hello:1), by ?qualifier= and through an alias, each run with
// the frozen settings (the function answers with its environment); then
// checks the errors and audits the log.
func TestVersionsOverHTTP(t *testing.T) {
	cli := dockertest.Client(t)
	// Its answer holds its environment: which settings ran shows.
	img := dockertest.BuildGoImage(t, cli, "internal/testfn/lambdago", "minilambda-e2e-versions")
	db := filepath.Join(t.TempDir(), "events.db")
	s := startServer(t, db)
	if code := s.call("POST", "/functions", map[string]any{"name": "hello", "image": img.Tag, "mode": "lambda",
		"env": map[string]string{"OWN": "one"}}, nil); code != 201 {
		t.Fatalf("register: %d", code)
	}
	var v projections.Version
	if code := s.call("POST", "/functions/hello/versions", map[string]any{"description": "first"}, &v); code != 201 ||
		v.Number != 1 || v.ImageDigest != img.ID || v.Description != "first" {
		t.Fatalf("publish: %d %+v", code, v)
	}
	if code := s.call("PUT", "/functions/hello", map[string]any{"env": map[string]string{"OWN": "two"}}, nil); code != 200 {
		t.Fatalf("update: %d", code)
	}
	var vs []projections.Version
	if code := s.call("GET", "/functions/hello/versions", nil, &vs); code != 200 || len(vs) != 1 || vs[0].Env["OWN"] != "one" {
		t.Fatalf("list versions: %d %+v", code, vs)
	}
	var a struct {
		projections.Alias
		Error string `json:"error"`
	}
	if code := s.call("POST", "/functions/hello/aliases", map[string]any{"name": "live", "function_version": "1"}, &a); code != 201 || a.FunctionVersion != "1" {
		t.Fatalf("create alias: %d %+v", code, a)
	}
	for _, c := range []struct{ path, want, own string }{
		{"/invoke/hello", "$LATEST", "two"}, {"/invoke/hello:1", "1", "one"}, {"/invoke/hello?qualifier=1", "1", "one"},
		{"/invoke/hello:live", "1", "one"}, {"/invoke/hello:$LATEST", "$LATEST", "two"},
	} {
		var inv projections.Invocation
		if code := s.call("POST", c.path, map[string]any{"event": map[string]string{"name": "Ada"}}, &inv); code != 200 || inv.ExecutedVersion != c.want {
			t.Errorf("%s: %d ran %q, want %q: %+v", c.path, code, inv.ExecutedVersion, c.want, inv)
		}
		var answer struct {
			Env map[string]string `json:"env"`
		}
		if err := json.Unmarshal([]byte(inv.Result), &answer); err != nil || answer.Env["OWN"] != c.own || answer.Env["AWS_LAMBDA_FUNCTION_VERSION"] != c.want {
			t.Errorf("%s ran with OWN=%q, AWS_LAMBDA_FUNCTION_VERSION=%q; want %q, %q (%v)", c.path, answer.Env["OWN"], answer.Env["AWS_LAMBDA_FUNCTION_VERSION"], c.own, c.want, err)
		}
		if strings.Contains(c.path, "live") && inv.Alias != "live" {
			t.Errorf("%s: alias %q on the record", c.path, inv.Alias)
		}
	}
	for _, c := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", "/invoke/hello:9", nil, 404},
		{"POST", "/invoke/hello:nope", nil, 404},
		{"POST", "/invoke/hello:1?qualifier=1", nil, 400},
		{"POST", "/invoke/hello:", nil, 400},
		{"GET", "/functions/hello/versions/2", nil, 404},
		{"POST", "/functions/hello/aliases", map[string]any{"name": "live", "function_version": "1"}, 409},
		{"POST", "/functions/hello/aliases", map[string]any{"name": "123", "function_version": "1"}, 400},
		{"POST", "/functions/hello/aliases", map[string]any{"name": "x", "function_version": "5"}, 400},
		{"PUT", "/functions/hello/aliases/live", map[string]any{"function_version": "1", "additional_version_weights": map[string]float64{"1": 0.5}}, 400},
		{"DELETE", "/functions/hello/aliases/live", nil, 204},
		{"DELETE", "/functions/hello/aliases/live", nil, 404},
	} {
		if code := s.call(c.method, c.path, c.body, nil); code != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, code, c.want)
		}
	}
	if err := s.stop(15); err != nil {
		t.Fatal(err)
	}
	assertAudit(t, db)
}
