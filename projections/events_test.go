package projections_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// TestConstructors checks that each event type's constructor writes its
// type, its ids and the current payload version, whatever V the caller
// left.
func TestConstructors(t *testing.T) {
	must := func(e eventlog.Event, err error) eventlog.Event {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	exit := 0
	for _, tc := range []struct {
		e        eventlog.Event
		typ      string
		fn, inv  string
		contains string
	}{
		{must(projections.NewFunctionRegistered("F", projections.FunctionRegistered{Spec: function.Spec{Name: "n", Image: "i"}, CreatedAt: time.Unix(0, 0)})),
			projections.TypeFunctionRegistered, "F", "", `"name":"n","image":"i"`},
		{must(projections.NewFunctionUpdated("F", projections.FunctionUpdated{Version: 2, Spec: function.Spec{Name: "n"}})),
			projections.TypeFunctionUpdated, "F", "", `"version":2,"name":"n"`},
		{must(projections.NewFunctionDeleted("F")), projections.TypeFunctionDeleted, "F", "", `{"v":1}`},
		{must(projections.NewInvocationQueued("F", "I", projections.InvocationQueued{V: 7, Event: json.RawMessage(`{"a":1}`)})),
			projections.TypeInvocationQueued, "F", "I", `"event":{"a":1}`},
		{must(projections.NewInvocationStarted("F", "I", projections.InvocationStarted{Attempt: 2, ContainerID: "c"})),
			projections.TypeInvocationStarted, "F", "I", `"attempt":2,"container_id":"c"`},
		{must(projections.NewInvocationEnded("F", "I", projections.InvocationEnded{ExitCode: &exit})),
			projections.TypeInvocationCompleted, "F", "I", `"exit_code":0`},
		{must(projections.NewInvocationEnded("F", "I", projections.InvocationEnded{ErrorType: function.ErrorTimeout})),
			projections.TypeInvocationTimedOut, "F", "I", `"error_type":"timeout"`},
		{must(projections.NewInvocationEnded("F", "I", projections.InvocationEnded{ErrorType: function.ErrorOutOfMemory})),
			projections.TypeInvocationFailed, "F", "I", `"error_type":"out_of_memory"`},
		{must(projections.NewInvocationEnded("F", "I", projections.InvocationEnded{ErrorType: function.ErrorPlatform})),
			projections.TypeInvocationFailed, "F", "I", `"error_type":"platform"`},
		{must(projections.NewInvocationRetried("F", "I", projections.InvocationRetried{Attempt: 1, Reason: "r"})),
			projections.TypeInvocationRetried, "F", "I", `"reason":"r"`},
		{must(projections.NewInvocationCallback("F", "I", projections.InvocationCallback{URL: "http://h/", Attempts: 1})),
			projections.TypeInvocationCallback, "F", "I", `"url":"http://h/","attempts":1`},
		{must(projections.NewImageLoaded(projections.ImageLoaded{Loaded: []string{"a:1"}})),
			projections.TypeImageLoaded, "", "", `"loaded":["a:1"]`},
		{must(projections.NewHotStarted("F", projections.HotStarted{ContainerID: "c", FunctionVersion: 3})),
			projections.TypeHotStarted, "F", "", `"function_version":3`},
		{must(projections.NewHotStopped("F", projections.HotStopped{ContainerID: "c", Reason: "idle"})),
			projections.TypeHotStopped, "F", "", `"reason":"idle"`},
		{must(projections.NewRecoveryDecided(projections.RecoveryDecided{Retried: 2})),
			projections.TypeRecoveryDecided, "", "", `"retried":2`},
	} {
		e := tc.e
		if e.Type != tc.typ || e.FunctionID != tc.fn || e.InvocationID != tc.inv {
			t.Errorf("%s: type %s, function %q, invocation %q", tc.typ, e.Type, e.FunctionID, e.InvocationID)
		}
		var v struct{ V int }
		if err := json.Unmarshal(e.Data, &v); err != nil || v.V != 1 {
			t.Errorf("%s: payload version %d (%v) in %s", tc.typ, v.V, err, e.Data)
		}
		if !json.Valid(e.Data) || !strings.Contains(string(e.Data), tc.contains) {
			t.Errorf("%s: payload %s lacks %s", tc.typ, e.Data, tc.contains)
		}
	}
	if _, err := projections.NewInvocationQueued("F", "I", projections.InvocationQueued{Event: json.RawMessage(`{`)}); err == nil {
		t.Error("a queued event with an event that is not JSON was built")
	}
}

// TestQueuedPayload checks the hand-built invocation.queued payload against
// encoding/json's, member for member, and that the event is stored and read
// back as sent, without copying it on the way out.
func TestQueuedPayload(t *testing.T) {
	for _, p := range []projections.InvocationQueued{
		{FunctionName: "fn", FunctionVersion: 3, Event: json.RawMessage(`{"a":[1,2,{"b":"c"}]}`)},
		{FunctionName: "f\"n\\\u00e9", FunctionVersion: 1, Async: true, Event: json.RawMessage(`"x"`), Timeout: 9, CallbackURL: "http://h:1/p?q=1"},
		{FunctionName: "empty"},
		{FunctionName: "dest", Async: true, TraceID: "t", TraceSupplied: true, ScheduleID: "s",
			DestinationOf: &function.DestinationOf{InvocationID: "I0", Condition: "Success", Depth: 2}},
	} {
		e, err := projections.NewInvocationQueued("F", "I", p)
		if err != nil {
			t.Fatal(err)
		}
		p.V = 1
		want, _ := json.Marshal(p)
		if string(e.Data) != string(want) {
			t.Errorf("payload\n got %s\nwant %s", e.Data, want)
		}
		// What is written reads back as it was.
		got, err := projections.DecodeQueued(&e)
		if err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("decoded %+v, %v; want %+v", got, err, p)
		}
	}
	event := json.RawMessage("{\n  \"html\": \"<b>&</b>\",\n  \"n\": 1\n}")
	e, err := projections.NewInvocationQueued("F", "I", projections.InvocationQueued{FunctionName: "fn", Event: event})
	if err != nil {
		t.Fatal(err)
	}
	q, err := projections.DecodeQueued(&e)
	if err != nil || string(q.Event) != string(event) || q.FunctionName != "fn" {
		t.Fatalf("read back: %q %+v %v", q.Event, q, err)
	}
	if &q.Event[0] != &e.Data[bytes.Index(e.Data, event)] {
		t.Error("the event read back is a copy, not the payload's bytes")
	}
}
