package projections

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
)

// Event types. Payloads carry "v", their schema version: decoders accept
// every version written so far. Each type has one constructor below, which
// every writer of the log uses.
const (
	TypeFunctionRegistered  = "function.registered"
	TypeFunctionUpdated     = "function.updated"
	TypeFunctionTagged      = "function.tagged"
	TypeFunctionDeleted     = "function.deleted"
	TypeVersionPublished    = "function.version_published"
	TypeAliasCreated        = "function.alias_created"
	TypeAliasUpdated        = "function.alias_updated"
	TypeAliasDeleted        = "function.alias_deleted"
	TypeScheduleCreated     = "schedule.created"
	TypeScheduleDeleted     = "schedule.deleted"
	TypeInvocationQueued    = "invocation.queued"
	TypeInvocationStarted   = "invocation.started"
	TypeInvocationCompleted = "invocation.completed"
	TypeInvocationFailed    = "invocation.failed"
	TypeInvocationTimedOut  = "invocation.timed_out"
	TypeInvocationRetried   = "invocation.retried"
	TypeInvocationCallback  = "invocation.callback"
	TypeImageLoaded         = "image.loaded"
	TypeImageBuilt          = "image.built"
	TypeHotStarted          = "hot.started"
	TypeHotStopped          = "hot.stopped"
	TypeRecoveryDecided     = "recovery.decided"
)

// payloadV is the schema version the constructors write.
const payloadV = 1

// Invocation statuses, the seed's four.
const (
	StatusPending   = "PENDING"
	StatusRunning   = "RUNNING"
	StatusCompleted = "COMPLETED"
	StatusFailed    = "FAILED"
)

// FunctionRegistered is the payload of function.registered.
type FunctionRegistered struct {
	V int `json:"v"`
	function.Spec
	CreatedAt time.Time `json:"created_at"`
	// Imported marks a function that migrate brought over from a legacy
	// functions.json.
	Imported bool `json:"imported,omitempty"`
	// OriginalName is the legacy name when migrate had to rename a function
	// whose name another function already had.
	OriginalName string `json:"original_name,omitempty"`
}

// FunctionUpdated is the payload of function.updated: the whole new spec.
type FunctionUpdated struct {
	V       int `json:"v"`
	Version int `json:"version"`
	function.Spec
}

// FunctionDeleted is the payload of function.deleted.
type FunctionDeleted struct {
	V int `json:"v"`
}

// VersionPublished is the payload of function.version_published: the
// function's settings and image frozen as a numbered version.
type VersionPublished struct {
	V int `json:"v"`
	// Number is the published version, from 1, one more than the last.
	Number int `json:"number"`
	// Revision is the function's version (its count of changes) that was
	// published.
	Revision int `json:"revision"`
	function.Spec
	// ImageDigest is the image the version runs, whatever its tag names
	// later.
	ImageDigest string `json:"image_digest"`
	Description string `json:"description,omitempty"`
}

// AliasSet is the payload of function.alias_created and
// function.alias_updated: the alias's whole settings.
type AliasSet struct {
	V    int    `json:"v"`
	Name string `json:"name"`
	function.AliasSpec
}

// AliasDeleted is the payload of function.alias_deleted.
type AliasDeleted struct {
	V    int    `json:"v"`
	Name string `json:"name"`
}

// ScheduleCreated is the payload of schedule.created.
type ScheduleCreated struct {
	V  int    `json:"v"`
	ID string `json:"id"`
	function.ScheduleSpec
}

// ScheduleDeleted is the payload of schedule.deleted.
type ScheduleDeleted struct {
	V  int    `json:"v"`
	ID string `json:"id"`
}

// InvocationQueued is the payload of invocation.queued: a request accepted,
// sync or async, with the event to deliver.
type InvocationQueued struct {
	V               int             `json:"v"`
	FunctionName    string          `json:"function_name"`
	FunctionVersion int             `json:"function_version"`
	Async           bool            `json:"async,omitempty"`
	Event           json.RawMessage `json:"event,omitempty"`
	Timeout         int             `json:"timeout,omitempty"` // seconds, overriding the function's
	CallbackURL     string          `json:"callback_url,omitempty"`
	// ExecutedVersion is the published version that runs ("3"); empty for
	// the function's current settings ($LATEST).
	ExecutedVersion string `json:"executed_version,omitempty"`
	// Alias is the alias the caller named, when it did.
	Alias string `json:"alias,omitempty"`
	// TraceID ties the invocation to its caller's trace: a W3C trace id,
	// an X-Request-ID, or one the server made.
	TraceID string `json:"trace_id,omitempty"`
	// TraceSupplied says the caller gave the trace id.
	TraceSupplied bool `json:"trace_supplied,omitempty"`
	// CloudEvent is the attributes of the CloudEvent the invocation was
	// given, when it was given one.
	CloudEvent *CloudEventAttrs `json:"cloud_event,omitempty"`
	// ScheduleID and ScheduledAt name the schedule that fired the
	// invocation, and the instant it was due.
	ScheduleID  string     `json:"schedule_id,omitempty"`
	ScheduledAt *time.Time `json:"scheduled_at,omitempty"`
	// DestinationOf names the invocation whose end this one is a
	// destination of (OnSuccess, OnFailure).
	DestinationOf *function.DestinationOf `json:"destination_of,omitempty"`
}

// CloudEventAttrs are the required attributes of a CloudEvent, as an
// invocation record keeps them.
type CloudEventAttrs = function.CloudEventAttrs

// InvocationStarted is the payload of invocation.started.
type InvocationStarted struct {
	V           int    `json:"v"`
	Attempt     int    `json:"attempt"`
	ContainerID string `json:"container_id,omitempty"`
	ImageDigest string `json:"image_digest,omitempty"`
}

// InvocationEnded is the payload of invocation.completed, invocation.failed
// and invocation.timed_out.
type InvocationEnded struct {
	V               int                `json:"v"`
	Attempt         int                `json:"attempt"`
	Result          string             `json:"result"`
	Logs            string             `json:"logs"`
	ExitCode        *int               `json:"exit_code,omitempty"`
	DurationMS      int64              `json:"duration_ms"`
	ResultTruncated bool               `json:"result_truncated,omitempty"`
	LogsTruncated   bool               `json:"logs_truncated,omitempty"`
	Error           string             `json:"error,omitempty"`
	ErrorType       function.ErrorType `json:"error_type,omitempty"`
	// LambdaErrorType is a lambda function's errorType, as its runtime
	// reported it ("Runtime.ExitError" when it exited instead).
	LambdaErrorType string `json:"lambda_error_type,omitempty"`
	// InitDurationMS is how long the long-lived container that took the
	// attempt took to get ready, on the attempt that waited for it.
	InitDurationMS int64 `json:"init_duration,omitempty"`
}

// InvocationRetried is the payload of invocation.retried: the attempt that
// failed will be followed by another, not before NotBefore.
type InvocationRetried struct {
	V         int       `json:"v"`
	Attempt   int       `json:"attempt"`
	Reason    string    `json:"reason"`
	NotBefore time.Time `json:"not_before"`
	// The failed attempt's outcome, when it got as far as running.
	ErrorType       function.ErrorType `json:"error_type,omitempty"`
	ExitCode        *int               `json:"exit_code,omitempty"`
	DurationMS      int64              `json:"duration_ms,omitempty"`
	Result          string             `json:"result,omitempty"`
	Logs            string             `json:"logs,omitempty"`
	LambdaErrorType string             `json:"lambda_error_type,omitempty"`
	InitDurationMS  int64              `json:"init_duration,omitempty"`
}

// InvocationCallback is the payload of invocation.callback: how the
// delivery of an ended invocation's record to its callback URL went.
type InvocationCallback struct {
	V          int    `json:"v"`
	URL        string `json:"url"`
	Attempts   int    `json:"attempts"`
	StatusCode int    `json:"status_code,omitempty"`
	Error      string `json:"error,omitempty"`
}

// FunctionTagged is the payload of function.tagged: the function's tags
// after the change, all of them. Tags are not settings: a change of them
// is no new version of the function.
type FunctionTagged struct {
	V    int               `json:"v"`
	Tags map[string]string `json:"tags"`
}

// ImageLoaded is the payload of image.loaded, and the answer to an
// upload.
type ImageLoaded struct {
	V      int      `json:"v"`
	Loaded []string `json:"loaded"`
	// Replaced are the tags that named another image before the load.
	Replaced []ReplacedTag `json:"replaced,omitempty"`
}

// ImageBuilt is the payload of image.built: the image the server built
// from a zip package, before the function that runs it was registered or
// changed (that event's package names the same code).
type ImageBuilt struct {
	V int `json:"v"`
	// Function is the name of the function the package was sent for.
	Function string `json:"function"`
	Image    string `json:"image"`
	ID       string `json:"id"`
	function.Package
}

// ReplacedTag is a tag an upload moved to another image.
type ReplacedTag struct {
	Tag        string `json:"tag"`
	PreviousID string `json:"previous_id"`
	ID         string `json:"id"`
}

// HotStarted is the payload of hot.started.
type HotStarted struct {
	V               int    `json:"v"`
	ContainerID     string `json:"container_id"`
	ImageDigest     string `json:"image_digest"`
	FunctionVersion int    `json:"function_version"`
}

// HotStopped is the payload of hot.stopped.
type HotStopped struct {
	V           int    `json:"v"`
	ContainerID string `json:"container_id"`
	Reason      string `json:"reason"`
}

// RecoveryDecided is the payload of recovery.decided: what start-up
// recovery did about the work an earlier run left.
type RecoveryDecided struct {
	V                 int    `json:"v"`
	Interrupted       int    `json:"interrupted"` // RUNNING, or sync PENDING, when the server stopped
	Retried           int    `json:"retried"`     // interrupted async invocations queued for another attempt
	Requeued          int    `json:"requeued"`    // PENDING async invocations back in the queue
	ContainersRemoved int    `json:"containers_removed"`
	Note              string `json:"note,omitempty"`
}

// newEvent builds an event of type typ about the given ids with payload as
// its data.
func newEvent(typ, functionID, invocationID string, payload any) (eventlog.Event, error) {
	data, err := json.Marshal(payload)
	if err != nil {
		return eventlog.Event{}, fmt.Errorf("encode %s: %w", typ, err)
	}
	return eventlog.Event{Type: typ, FunctionID: functionID, InvocationID: invocationID, Data: data}, nil
}

// NewFunctionRegistered is the function.registered event of a new
// function.
func NewFunctionRegistered(functionID string, p FunctionRegistered) (eventlog.Event, error) {
	p.V = payloadV
	return newEvent(TypeFunctionRegistered, functionID, "", p)
}

// NewFunctionUpdated is the function.updated event recording a function's
// new version.
func NewFunctionUpdated(functionID string, p FunctionUpdated) (eventlog.Event, error) {
	p.V = payloadV
	return newEvent(TypeFunctionUpdated, functionID, "", p)
}

// NewFunctionDeleted is the function.deleted event of a function.
func NewFunctionDeleted(functionID string) (eventlog.Event, error) {
	return newEvent(TypeFunctionDeleted, functionID, "", FunctionDeleted{V: payloadV})
}

// NewVersionPublished is the function.version_published event of a new
// published version.
func NewVersionPublished(functionID string, p VersionPublished) (eventlog.Event, error) {
	p.V = payloadV
	return newEvent(TypeVersionPublished, functionID, "", p)
}

// NewAliasSet is the function.alias_created event of a new alias, or the
// function.alias_updated event of a changed one.
func NewAliasSet(functionID string, created bool, p AliasSet) (eventlog.Event, error) {
	p.V = payloadV
	typ := TypeAliasUpdated
	if created {
		typ = TypeAliasCreated
	}
	return newEvent(typ, functionID, "", p)
}

// NewAliasDeleted is the function.alias_deleted event of an alias.
func NewAliasDeleted(functionID, name string) (eventlog.Event, error) {
	return newEvent(TypeAliasDeleted, functionID, "", AliasDeleted{V: payloadV, Name: name})
}

// NewScheduleCreated is the schedule.created event of a new schedule.
func NewScheduleCreated(functionID string, p ScheduleCreated) (eventlog.Event, error) {
	p.V = payloadV
	return newEvent(TypeScheduleCreated, functionID, "", p)
}

// NewScheduleDeleted is the schedule.deleted event of a schedule.
func NewScheduleDeleted(functionID, id string) (eventlog.Event, error) {
	return newEvent(TypeScheduleDeleted, functionID, "", ScheduleDeleted{V: payloadV, ID: id})
}

// NewInvocationQueued is the invocation.queued event of a new invocation.
// Its payload holds the event as the client sent it, copied once: encoding
// it with the rest (encoding/json compacts a raw message into a buffer of
// its own, and copies that again) would hold a large event three times.
func NewInvocationQueued(functionID, invocationID string, p InvocationQueued) (eventlog.Event, error) {
	p.V = payloadV
	if len(p.Event) > 0 && !json.Valid(p.Event) {
		return eventlog.Event{}, fmt.Errorf("encode %s: the event is not JSON", TypeInvocationQueued)
	}
	name, err := json.Marshal(p.FunctionName)
	if err != nil {
		return eventlog.Event{}, fmt.Errorf("encode %s: %w", TypeInvocationQueued, err)
	}
	callback, err := json.Marshal(p.CallbackURL)
	if err != nil {
		return eventlog.Event{}, fmt.Errorf("encode %s: %w", TypeInvocationQueued, err)
	}
	// The members of InvocationQueued in order, with their omitempty.
	b := make([]byte, 0, 96+len(name)+len(p.Event)+len(callback))
	b = strconv.AppendInt(append(b, `{"v":`...), int64(p.V), 10)
	b = append(append(b, `,"function_name":`...), name...)
	b = strconv.AppendInt(append(b, `,"function_version":`...), int64(p.FunctionVersion), 10)
	if p.Async {
		b = append(b, `,"async":true`...)
	}
	if len(p.Event) > 0 {
		b = append(append(b, `,"event":`...), p.Event...)
	}
	if p.Timeout != 0 {
		b = strconv.AppendInt(append(b, `,"timeout":`...), int64(p.Timeout), 10)
	}
	if p.CallbackURL != "" {
		b = append(append(b, `,"callback_url":`...), callback...)
	}
	// Versions are digits and aliases letters, digits, '-' and '_': no
	// escaping, but quoted as JSON all the same in case of a caller's bug.
	if p.ExecutedVersion != "" {
		b = strconv.AppendQuote(append(b, `,"executed_version":`...), p.ExecutedVersion)
	}
	if p.Alias != "" {
		b = strconv.AppendQuote(append(b, `,"alias":`...), p.Alias)
	}
	for _, m := range []struct {
		name string
		v    any
		set  bool
	}{
		{"trace_id", p.TraceID, p.TraceID != ""},
		{"trace_supplied", p.TraceSupplied, p.TraceSupplied},
		{"cloud_event", p.CloudEvent, p.CloudEvent != nil},
		{"schedule_id", p.ScheduleID, p.ScheduleID != ""},
		{"scheduled_at", p.ScheduledAt, p.ScheduledAt != nil},
		{"destination_of", p.DestinationOf, p.DestinationOf != nil},
	} {
		if !m.set {
			continue
		}
		v, err := json.Marshal(m.v)
		if err != nil {
			return eventlog.Event{}, fmt.Errorf("encode %s: %w", TypeInvocationQueued, err)
		}
		b = append(append(append(append(b, ',', '"'), m.name...), '"', ':'), v...)
	}
	b = append(b, '}')
	return eventlog.Event{Type: TypeInvocationQueued, FunctionID: functionID, InvocationID: invocationID, Data: b}, nil
}

// NewInvocationStarted is the invocation.started event of an attempt.
func NewInvocationStarted(functionID, invocationID string, p InvocationStarted) (eventlog.Event, error) {
	p.V = payloadV
	return newEvent(TypeInvocationStarted, functionID, invocationID, p)
}

// NewInvocationEnded is the event that ends an invocation; its type
// follows from the payload's error type: invocation.completed with none,
// invocation.timed_out for a timeout, invocation.failed otherwise.
func NewInvocationEnded(functionID, invocationID string, p InvocationEnded) (eventlog.Event, error) {
	p.V = payloadV
	typ := TypeInvocationFailed
	switch p.ErrorType {
	case "":
		typ = TypeInvocationCompleted
	case function.ErrorTimeout:
		typ = TypeInvocationTimedOut
	}
	return newEvent(typ, functionID, invocationID, p)
}

// NewInvocationRetried is the invocation.retried event of a failed
// attempt that another will follow.
func NewInvocationRetried(functionID, invocationID string, p InvocationRetried) (eventlog.Event, error) {
	p.V = payloadV
	return newEvent(TypeInvocationRetried, functionID, invocationID, p)
}

// NewInvocationCallback is the invocation.callback event of a callback's
// delivery.
func NewInvocationCallback(functionID, invocationID string, p InvocationCallback) (eventlog.Event, error) {
	p.V = payloadV
	return newEvent(TypeInvocationCallback, functionID, invocationID, p)
}

// NewImageLoaded is the image.loaded event of an upload.
func NewImageLoaded(p ImageLoaded) (eventlog.Event, error) {
	p.V = payloadV
	return newEvent(TypeImageLoaded, "", "", p)
}

// NewFunctionTagged is the function.tagged event of a change of a
// function's tags.
func NewFunctionTagged(functionID string, p FunctionTagged) (eventlog.Event, error) {
	p.V = payloadV
	if p.Tags == nil {
		p.Tags = map[string]string{}
	}
	return newEvent(TypeFunctionTagged, functionID, "", p)
}

// NewImageBuilt is the image.built event of a zip package's build.
func NewImageBuilt(p ImageBuilt) (eventlog.Event, error) {
	p.V = payloadV
	return newEvent(TypeImageBuilt, "", "", p)
}

// NewHotStarted is the hot.started event of a hot container of a
// function.
func NewHotStarted(functionID string, p HotStarted) (eventlog.Event, error) {
	p.V = payloadV
	return newEvent(TypeHotStarted, functionID, "", p)
}

// NewHotStopped is the hot.stopped event of a hot container of a
// function.
func NewHotStopped(functionID string, p HotStopped) (eventlog.Event, error) {
	p.V = payloadV
	return newEvent(TypeHotStopped, functionID, "", p)
}

// NewRecoveryDecided is the recovery.decided event of a start-up.
func NewRecoveryDecided(p RecoveryDecided) (eventlog.Event, error) {
	p.V = payloadV
	return newEvent(TypeRecoveryDecided, "", "", p)
}
