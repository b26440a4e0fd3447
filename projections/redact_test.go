package projections_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// TestRedact checks that each event carrying a function's settings loses
// its trigger's HMAC secret, and keeps the rest of its data, and that any
// other event is left as it is.
func TestRedact(t *testing.T) {
	const secret = "a-very-secret-secret"
	hmac := func() *function.HTTPTrigger {
		return &function.HTTPTrigger{Auth: "hmac", HMACSecret: secret, HMACHeader: "X-Sig"}
	}
	must := func(e eventlog.Event, err error) eventlog.Event {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	spec := function.Spec{Name: "fn", Image: "img", HTTPTrigger: hmac()}
	for _, tc := range []struct {
		name   string
		e      eventlog.Event
		redact bool
	}{
		{"registered", must(projections.NewFunctionRegistered("f1", projections.FunctionRegistered{Spec: spec, CreatedAt: time.Now()})), true},
		{"updated", must(projections.NewFunctionUpdated("f1", projections.FunctionUpdated{Version: 2, Spec: spec})), true},
		{"version published", must(projections.NewVersionPublished("f1", projections.VersionPublished{Number: 1, Revision: 2, Spec: spec, ImageDigest: "sha256:ab"})), true},
		{"open trigger", must(projections.NewFunctionRegistered("f1", projections.FunctionRegistered{
			Spec: function.Spec{Name: "fn", Image: "img", HTTPTrigger: &function.HTTPTrigger{Auth: "none"}}})), false},
		{"no trigger", must(projections.NewFunctionUpdated("f1", projections.FunctionUpdated{Version: 2, Spec: function.Spec{Name: "fn", Image: "img"}})), false},
		{"other type", eventlog.Event{Type: projections.TypeInvocationQueued,
			Data: []byte(`{"v":1,"http_trigger":{"hmac_secret":"` + secret + `"}}`)}, false},
		{"not JSON", eventlog.Event{Type: projections.TypeFunctionUpdated, Data: []byte(`"hmac_secret"`)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, paths := projections.Redact(tc.e.Type, tc.e.Data)
			if !tc.redact {
				if !bytes.Equal(data, tc.e.Data) || paths != nil {
					t.Fatalf("Redact changed %s, paths %v", data, paths)
				}
				return
			}
			if !slices.Equal(paths, []string{"data.http_trigger.hmac_secret"}) {
				t.Fatalf("paths %v", paths)
			}
			if strings.Contains(string(data), secret) || strings.Contains(string(data), "hmac_secret") {
				t.Fatalf("the secret is still in %s", data)
			}
			// All else is kept: the data is the original's less the secret.
			var got, want map[string]any
			if err := json.Unmarshal(data, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(tc.e.Data, &want); err != nil {
				t.Fatal(err)
			}
			delete(want["http_trigger"].(map[string]any), "hmac_secret")
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			if !bytes.Equal(g, w) {
				t.Fatalf("got %s, want %s", g, w)
			}
		})
	}
}
