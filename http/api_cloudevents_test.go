package http

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestBinaryCloudEvent(t *testing.T) {
	r := httptest.NewRequest("POST", "/invoke/f", nil)
	for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-ext": "a%2Fb"} {
		r.Header.Set(k, v)
	}
	for _, c := range []struct {
		ctype, body, member, want string
	}{
		{"application/json", `{"a": 1}`, "data", `{"a":1}`},
		{"text/plain", "hi", "data", `"hi"`},
		{"application/octet-stream", "\xff\x00", "data_base64", `"/wA="`},
	} {
		r.Header.Set("Content-Type", c.ctype)
		b, err := binaryCloudEvent(r, c.ctype, []byte(c.body))
		var m map[string]json.RawMessage
		if err != nil || json.Unmarshal(b, &m) != nil {
			t.Fatalf("%s: %v %s", c.ctype, err, b)
		}
		if got := strings.ReplaceAll(string(m[c.member]), " ", ""); got != c.want || string(m["ext"]) != `"a/b"` || string(m["id"]) != `"1"` {
			t.Errorf("%s: %s", c.ctype, b)
		}
	}
	if _, err := binaryCloudEvent(r, "application/json", []byte("{not json")); err == nil {
		t.Error("invalid JSON data accepted")
	}
}

func TestCloudEventAttrs(t *testing.T) {
	if a, err := cloudEventAttrs([]byte(`{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": 5}`)); err != nil || a.ID != "1" {
		t.Errorf("%v %+v", err, a)
	}
	for _, bad := range []string{`[]`, `"x"`, `{"specversion": 1, "id": "1", "source": "/s", "type": "t"}`, `{"specversion": "1.0", "id": "1", "source": "/s"}`} {
		if _, err := cloudEventAttrs([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestCloudEventBatchRefused: a batch is refused for what it is, before
// any of it is read.
func TestCloudEventBatchRefused(t *testing.T) {
	s := New(Options{})
	r := httptest.NewRequest("POST", "/invoke/f", strings.NewReader(`[{"specversion": "1.0"}]`))
	r.Header.Set("Content-Type", "application/cloudevents-batch+json")
	_, ok, err := s.cloudEventRequest(httptest.NewRecorder(), r)
	if !ok || err == nil || !strings.Contains(err.Error(), "batched CloudEvents are not supported") {
		t.Errorf("a batch: %v %v", ok, err)
	}
}
