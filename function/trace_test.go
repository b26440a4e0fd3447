package function_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/minilambda/minilambda/function"
)

func TestTraceFromHeaders(t *testing.T) {
	const w3c = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, c := range []struct{ traceparent, requestID, want string }{
		{"00-" + w3c + "-00f067aa0ba902b7-01", "req", w3c},
		{"00-" + w3c + "-00f067aa0ba902b7-01-extra", "", w3c},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "req", "req"},
		{"00-" + strings.ToUpper(w3c) + "-00f067aa0ba902b7-01", "", "00-" + strings.ToUpper(w3c) + "-00f067aa0ba902b7-01"},
		{"ff-" + w3c + "-00f067aa0ba902b7-01", "req", "req"},
		{"", "req-1", "req-1"},
		{"plain-trace", "", "plain-trace"},
		{"", "has space", ""},
		{"", strings.Repeat("x", 129), ""},
		{"", "", ""},
	} {
		if got := function.TraceFromHeaders(c.traceparent, c.requestID); got != c.want {
			t.Errorf("%q %q: %q, want %q", c.traceparent, c.requestID, got, c.want)
		}
	}
	if id := function.NewTraceID(); len(id) != 32 || id == function.NewTraceID() {
		t.Errorf("NewTraceID: %q", id)
	}
	if h := function.XRayTraceHeader(w3c); h != "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Sampled=0" {
		t.Errorf("X-Ray: %s", h)
	}
	if h := function.XRayTraceHeader("req-1"); h != "Root=req-1;Sampled=0" {
		t.Errorf("X-Ray of another id: %s", h)
	}
}

func TestRequestTraceAndCloudEvent(t *testing.T) {
	r, err := function.Request{}.Check()
	if err != nil || len(r.TraceID) != 32 || r.TraceSupplied {
		t.Errorf("generated: %v %+v", err, r)
	}
	if r, err = (function.Request{TraceID: "abc"}).Check(); err != nil || r.TraceID != "abc" || !r.TraceSupplied {
		t.Errorf("supplied: %v %+v", err, r)
	}
	if _, err := (function.Request{TraceID: "a b"}).Check(); !errors.Is(err, function.ErrInvalid) {
		t.Errorf("a bad trace id: %v", err)
	}
	for _, ce := range []function.CloudEventAttrs{
		{ID: "1", Source: "/s", Type: "t"},
		{SpecVersion: "1.0", Source: "/s", Type: "t"},
		{SpecVersion: "0.3", ID: "1", Source: "/s", Type: "t"},
		{SpecVersion: "1.0", ID: strings.Repeat("x", 2000), Source: "/s", Type: "t"},
	} {
		if _, err := (function.Request{CloudEvent: &ce}).Check(); !errors.Is(err, function.ErrInvalid) {
			t.Errorf("%+v: %v", ce, err)
		}
	}
}
