package projections

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/minilambda/minilambda/eventlog"
)

// FuzzScanEnded checks the payload scanner against encoding/json: on any
// valid JSON object both must agree on the fields the views use.
func FuzzScanEnded(f *testing.F) {
	exit := 2
	for _, p := range []InvocationEnded{
		{V: 1, Attempt: 1, Result: "ok\n", Logs: "a \"quoted\" \\ log\u00e9", ExitCode: &exit, DurationMS: 5, Error: "x", ErrorType: "timeout"},
		{V: 1},
	} {
		b, _ := json.Marshal(p)
		f.Add(b)
	}
	f.Add([]byte(`{"attempt": 3, "nested": {"a": [1, "}", {"b": null}]}, "error": "\u00e9\n"}`))
	f.Add([]byte(`{"exit_code": null, "result_truncated": true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e := &eventlog.Event{Type: TypeInvocationCompleted, Data: data}
		got, err := decodeEnded(e)
		var want InvocationEnded
		if json.Unmarshal(data, &want) != nil {
			return // the scanner may accept or refuse what is not valid JSON
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(data, &obj) != nil {
			return
		}
		for k := range obj {
			if strings.ToLower(k) != k || strings.ContainsAny(k, "\u017f\u212a") {
				// encoding/json also matches keys case-insensitively (and by
				// Unicode folding); the payloads we write use lower case.
				return
			}
		}
		if err != nil {
			// encoding/json takes the last of repeated keys and is lenient
			// about some types the scanner refuses; only complain when the
			// scanner refuses a payload encoding/json reads the same way.
			if b, _ := json.Marshal(want); string(b) == string(data) {
				t.Fatalf("scanner refused a canonical payload %s: %v", data, err)
			}
			return
		}
		want.Result, want.Logs = "", ""
		if (got.ExitCode == nil) != (want.ExitCode == nil) || got.ExitCode != nil && *got.ExitCode != *want.ExitCode {
			t.Fatalf("exit code differs on %s", data)
		}
		got.ExitCode, want.ExitCode = nil, nil
		if got != want {
			t.Fatalf("scanner read %+v, encoding/json %+v, from %s", got, want, data)
		}
	})
}
