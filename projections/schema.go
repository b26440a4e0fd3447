package projections

import (
	"reflect"
	"strings"
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
	{"HotStarted", TypeHotStarted, HotStarted{}},
	{"HotStopped", TypeHotStopped, HotStopped{}},
	{"RecoveryDecided", TypeRecoveryDecided, RecoveryDecided{}},
}

// Schema is every event type, keyed by the name of its constant without
// "Type" ("InvocationQueued" for TypeInvocationQueued), so that a client
// such as the console names types without a copy of their strings.
func Schema() map[string]EventSchema {
	s := make(map[string]EventSchema, len(eventTypes))
	for _, e := range eventTypes {
		s[e.name] = EventSchema{Type: e.typ, Members: members(reflect.TypeOf(e.payload))}
	}
	return s
}

// members lists the JSON members of a struct type, as encoding/json
// writes them: an embedded struct's are the outer one's.
func members(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case name != "":
			names = append(names, name)
		case f.Anonymous && f.Type.Kind() == reflect.Struct:
			names = append(names, members(f.Type)...)
		case f.IsExported():
			names = append(names, f.Name)
		}
	}
	return names
}
