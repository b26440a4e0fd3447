package projections

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/minilambda/minilambda/eventlog"
)

// Event types. Payloads carry "v", their schema version: decoders accept
// every version written so far.
const (
	TypeFunctionRegistered  = "function.registered"
	TypeFunctionUpdated     = "function.updated"
	TypeFunctionDeleted     = "function.deleted"
	TypeInvocationQueued    = "invocation.queued"
	TypeInvocationStarted   = "invocation.started"
	TypeInvocationCompleted = "invocation.completed"
	TypeInvocationFailed    = "invocation.failed"
	TypeInvocationTimedOut  = "invocation.timed_out"
	TypeInvocationRetried   = "invocation.retried"
)

// Invocation statuses, the seed's four.
const (
	StatusPending   = "PENDING"
	StatusRunning   = "RUNNING"
	StatusCompleted = "COMPLETED"
	StatusFailed    = "FAILED"
)

// Error types of a FAILED invocation, as Lambda's errorType.
const (
	ErrorFunction    = "function_error"
	ErrorTimeout     = "timeout"
	ErrorOutOfMemory = "out_of_memory"
	ErrorOutputLimit = "output_limit"
	ErrorPlatform    = "platform"
)

// FunctionSpec is what a user registers: the image and its settings.
type FunctionSpec struct {
	Name        string            `json:"name"`
	Image       string            `json:"image"`
	Timeout     int               `json:"timeout,omitempty"` // seconds
	MemoryMB    int               `json:"memory_mb,omitempty"`
	CPUs        float64           `json:"cpus,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	Mode        string            `json:"mode,omitempty"`
	Concurrency int               `json:"concurrency,omitempty"`
	Network     string            `json:"network,omitempty"`
	// ReadOnly runs the function with a read-only root filesystem and a
	// tmpfs on /tmp.
	ReadOnly bool `json:"read_only,omitempty"`
	// MaxAttempts bounds the attempts of an async invocation.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// CallbackURL receives the record of each async invocation that ends.
	CallbackURL string `json:"callback_url,omitempty"`
}

// FunctionRegistered is the payload of function.registered.
type FunctionRegistered struct {
	V int `json:"v"`
	FunctionSpec
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
	FunctionSpec
}

// FunctionDeleted is the payload of function.deleted.
type FunctionDeleted struct {
	V int `json:"v"`
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
}

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
	V               int    `json:"v"`
	Attempt         int    `json:"attempt"`
	Result          string `json:"result"`
	Logs            string `json:"logs"`
	ExitCode        *int   `json:"exit_code,omitempty"`
	DurationMS      int64  `json:"duration_ms"`
	ResultTruncated bool   `json:"result_truncated,omitempty"`
	LogsTruncated   bool   `json:"logs_truncated,omitempty"`
	Error           string `json:"error,omitempty"`
	ErrorType       string `json:"error_type,omitempty"`
}

// InvocationRetried is the payload of invocation.retried: the attempt that
// failed will be followed by another, not before NotBefore.
type InvocationRetried struct {
	V         int       `json:"v"`
	Attempt   int       `json:"attempt"`
	Reason    string    `json:"reason"`
	NotBefore time.Time `json:"not_before"`
	// The failed attempt's outcome, when it got as far as running.
	ErrorType  string `json:"error_type,omitempty"`
	ExitCode   *int   `json:"exit_code,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty"`
	Result     string `json:"result,omitempty"`
	Logs       string `json:"logs,omitempty"`
}

// NewEvent builds an event of type typ about the given ids with payload as
// its data.
func NewEvent(typ, functionID, invocationID string, payload any) (eventlog.Event, error) {
	data, err := json.Marshal(payload)
	if err != nil {
		return eventlog.Event{}, fmt.Errorf("encode %s: %w", typ, err)
	}
	return eventlog.Event{Type: typ, FunctionID: functionID, InvocationID: invocationID, Data: data}, nil
}
