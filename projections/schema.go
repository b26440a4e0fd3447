package projections

import (
	"reflect"
	"sync"

	"github.com/minilambda/minilambda/internal/jsonmembers"
)

// EventSchema is one event type as clients read it: the type's name in
// the log and the members of its payload, from the payload's json tags.
type EventSchema struct {
	Type    string   `json:"type"`
	Members []string `json:"members"`
}

// eventTypes is each event type by its constant's name without "Type",
// with a payload of its kind: the one list Schema is made from.
var eventTypes = []struct {
	name, typ string
	payload   any
}{
	{"FunctionRegistered", TypeFunctionRegistered, FunctionRegistered{}},
	{"FunctionUpdated", TypeFunctionUpdated, FunctionUpdated{}},
	{"FunctionDeleted", TypeFunctionDeleted, FunctionDeleted{}},
	{"FunctionTagged", TypeFunctionTagged, FunctionTagged{}},
	{"VersionPublished", TypeVersionPublished, VersionPublished{}},
	{"AliasCreated", TypeAliasCreated, AliasSet{}},
	{"AliasUpdated", TypeAliasUpdated, AliasSet{}},
	{"AliasDeleted", TypeAliasDeleted, AliasDeleted{}},
	{"ScheduleCreated", TypeScheduleCreated, ScheduleCreated{}},
	{"ScheduleDeleted", TypeScheduleDeleted, ScheduleDeleted{}},
	{"InvocationQueued", TypeInvocationQueued, InvocationQueued{}},
	{"InvocationStarted", TypeInvocationStarted, InvocationStarted{}},
	{"InvocationCompleted", TypeInvocationCompleted, InvocationEnded{}},
	{"InvocationFailed", TypeInvocationFailed, InvocationEnded{}},
	{"InvocationTimedOut", TypeInvocationTimedOut, InvocationEnded{}},
	{"InvocationRetried", TypeInvocationRetried, InvocationRetried{}},
	{"InvocationCallback", TypeInvocationCallback, InvocationCallback{}},
	{"ImageLoaded", TypeImageLoaded, ImageLoaded{}},
	{"ImageBuilt", TypeImageBuilt, ImageBuilt{}},
	{"HotStarted", TypeHotStarted, HotStarted{}},
	{"HotStopped", TypeHotStopped, HotStopped{}},
	{"RecoveryDecided", TypeRecoveryDecided, RecoveryDecided{}},
}

// Schema is every event type, keyed by the name of its constant without
// "Type" ("InvocationQueued" for TypeInvocationQueued), so that a client
// such as the console names types without a copy of their strings. It is
// built once and shared: callers must not change it.
func Schema() map[string]EventSchema { return schema() }

// schema builds Schema's answer once: the types are fixed at build time.
var schema = sync.OnceValue(func() map[string]EventSchema {
	s := make(map[string]EventSchema, len(eventTypes))
	for _, e := range eventTypes {
		s[e.name] = EventSchema{Type: e.typ, Members: jsonmembers.Of(reflect.TypeOf(e.payload))}
	}
	return s
})
