// Package function is Mini Lambda's domain: what a function is (its
// settings, their defaults and limits), how a function's settings and an
// invocation request are checked, the modes a function runs in and the
// kinds of failure an invocation can end with.
//
// Every other package takes these rules from here, so that each exists
// once: the API checks a registration with them, migrate an imported
// function, the projections record what they allow and the runner and its
// engines run it. Checks return errors wrapping [ErrInvalid] whose message
// says what to change, in words a user can act on; one about a single
// setting holds a [FieldError] that names it as the API spells it.
package function

import (
	"encoding/json"
	"errors"
	"time"
)

// Errors that callers map to answers; the HTTP API maps each to one status.
var (
	// ErrInvalid wraps what is wrong with a request or a setting; the
	// message says it.
	ErrInvalid = errors.New("invalid request")
	// ErrConflict means a name is taken, or a function changed meanwhile.
	ErrConflict = errors.New("conflict")
	// ErrBusy means the function, or the server, runs or queues as many
	// invocations as it may.
	ErrBusy = errors.New("concurrency limit reached")
)

// Mode is how a function's containers live.
type Mode string

// The modes. An empty mode, as functions imported from the legacy file
// have, runs as ModeCold.
const (
	// ModeCold runs each invocation in a fresh container, removed after.
	ModeCold Mode = "cold"
	// ModeHot keeps long-lived containers that take one event per line.
	ModeHot Mode = "hot"
	// ModeLambda keeps long-lived containers whose runtime speaks the AWS
	// Lambda Runtime API, as functions written for Lambda do.
	ModeLambda Mode = "lambda"
)

// ErrorType is the kind of failure an invocation ended with, as Lambda's
// errorType; it is empty for a success.
type ErrorType string

// The failure kinds.
const (
	// ErrorFunction: the function exited non-zero, or a hot container
	// crashed or broke the line protocol.
	ErrorFunction ErrorType = "function_error"
	// ErrorTimeout: the invocation ran past its timeout and was killed.
	ErrorTimeout ErrorType = "timeout"
	// ErrorOutOfMemory: the kernel killed the function at its memory limit.
	ErrorOutOfMemory ErrorType = "out_of_memory"
	// ErrorOutputLimit: stdout or stderr passed the server's output limit.
	ErrorOutputLimit ErrorType = "output_limit"
	// ErrorPlatform: the platform could not run the function (no image, no
	// engine, the client or the server went away).
	ErrorPlatform ErrorType = "platform"
)

// Request is one invocation as a client asks for it.
type Request struct {
	// Event is the JSON event; {} when empty.
	Event json.RawMessage
	// Timeout in seconds overrides the function's when not zero.
	Timeout int
	// CallbackURL, for async invocations, overrides the function's.
	CallbackURL string
	// Qualifier names the version to run: empty or $LATEST, a published
	// version number, or an alias.
	Qualifier string
	// TraceID is the caller's trace id; Check makes one when it is empty.
	TraceID string
	// TraceSupplied says the caller gave TraceID (Check sets it).
	TraceSupplied bool
	// CloudEvent is the attributes of the CloudEvent that Event is, when
	// it is one.
	CloudEvent *CloudEventAttrs
	// ScheduleID and ScheduledAt name the schedule that fires an async
	// invocation, and the instant it was due.
	ScheduleID  string
	ScheduledAt *time.Time
	// DestinationOf, for an async invocation that is a destination of
	// another's end, says whose.
	DestinationOf *DestinationOf
}

// Check refuses a timeout out of bounds and fills in the empty event.
// The callback URL is the caller's to check, against the hosts the
// operator allows.
func (r Request) Check() (Request, error) {
	if r.Timeout < 0 || r.Timeout > MaxTimeout {
		return r, InvalidField("timeout", "timeout must be between 1 and %d seconds", MaxTimeout)
	}
	if len(r.Event) == 0 {
		r.Event = json.RawMessage("{}")
	}
	if r.TraceID == "" {
		r.TraceID, r.TraceSupplied = NewTraceID(), false
	} else if err := CheckTraceID(r.TraceID); err != nil {
		return r, invalid("%v", err)
	} else {
		r.TraceSupplied = true
	}
	if r.CloudEvent != nil {
		if err := r.CloudEvent.Check(); err != nil {
			return r, err
		}
	}
	return r, nil
}
