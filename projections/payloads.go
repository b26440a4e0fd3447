package projections

import (
	"encoding/json"
	"fmt"

	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
)

// The decoders below read the fields the views need from the payloads
// every invocation writes, with scanObject. Unknown members are skipped, so
// later payload versions that add fields still decode; a known member of
// the wrong type is an error. The tables are built once: building them per
// event cost more than the scan.

// fields maps member names to what reads them into a T.
type fields[T any] map[string]func(*T, jsonValue) error

func intField[T any](at func(*T) *int) func(*T, jsonValue) error {
	return func(p *T, v jsonValue) error {
		n, err := v.Int()
		*at(p) = int(n)
		return err
	}
}

func int64Field[T any](at func(*T) *int64) func(*T, jsonValue) error {
	return func(p *T, v jsonValue) (err error) {
		*at(p), err = v.Int()
		return err
	}
}

func stringField[T any, S ~string](at func(*T) *S) func(*T, jsonValue) error {
	return func(p *T, v jsonValue) error {
		s, err := v.String()
		*at(p) = S(s)
		return err
	}
}

func boolField[T any](at func(*T) *bool) func(*T, jsonValue) error {
	return func(p *T, v jsonValue) (err error) {
		*at(p), err = v.Bool()
		return err
	}
}

// scanInto reads e's payload into p through f.
func scanInto[T any](e *eventlog.Event, f fields[T], p *T) error {
	err := scanObject(e.Data, func(k []byte, v jsonValue) error {
		if read := f[string(k)]; read != nil {
			return read(p, v)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s payload: %w", e.Type, err)
	}
	return nil
}

// rawField keeps a member's JSON as it is, sharing the payload's bytes.
func rawField[T any](at func(*T) *json.RawMessage) func(*T, jsonValue) error {
	return func(p *T, v jsonValue) error {
		*at(p) = v.raw
		return nil
	}
}

var queuedFields = fields[InvocationQueued]{
	"v":                intField(func(p *InvocationQueued) *int { return &p.V }),
	"function_name":    stringField(func(p *InvocationQueued) *string { return &p.FunctionName }),
	"function_version": intField(func(p *InvocationQueued) *int { return &p.FunctionVersion }),
	"async":            boolField(func(p *InvocationQueued) *bool { return &p.Async }),
	"event":            rawField(func(p *InvocationQueued) *json.RawMessage { return &p.Event }),
	"timeout":          intField(func(p *InvocationQueued) *int { return &p.Timeout }),
	"callback_url":     stringField(func(p *InvocationQueued) *string { return &p.CallbackURL }),
	"executed_version": stringField(func(p *InvocationQueued) *string { return &p.ExecutedVersion }),
	"alias":            stringField(func(p *InvocationQueued) *string { return &p.Alias }),
	"trace_id":         stringField(func(p *InvocationQueued) *string { return &p.TraceID }),
	"trace_supplied":   boolField(func(p *InvocationQueued) *bool { return &p.TraceSupplied }),
	"schedule_id":      stringField(func(p *InvocationQueued) *string { return &p.ScheduleID }),
	"cloud_event": func(p *InvocationQueued, v jsonValue) error {
		p.CloudEvent = new(CloudEventAttrs)
		return json.Unmarshal(v.raw, p.CloudEvent)
	},
	"scheduled_at": func(p *InvocationQueued, v jsonValue) error {
		p.ScheduledAt = new(time.Time)
		return json.Unmarshal(v.raw, p.ScheduledAt)
	},
	"destination_of": func(p *InvocationQueued, v jsonValue) error {
		p.DestinationOf = new(function.DestinationOf)
		return json.Unmarshal(v.raw, p.DestinationOf)
	},
}

// DecodeQueued reads the payload of an invocation.queued event. Its Event
// shares e's bytes rather than copying them: an event can be megabytes.
func DecodeQueued(e *eventlog.Event) (p InvocationQueued, err error) {
	err = scanInto(e, queuedFields, &p)
	return p, err
}

var startedFields = fields[InvocationStarted]{
	"v":            intField(func(p *InvocationStarted) *int { return &p.V }),
	"attempt":      intField(func(p *InvocationStarted) *int { return &p.Attempt }),
	"container_id": stringField(func(p *InvocationStarted) *string { return &p.ContainerID }),
	"image_digest": stringField(func(p *InvocationStarted) *string { return &p.ImageDigest }),
}

func decodeStarted(e *eventlog.Event) (p InvocationStarted, err error) {
	err = scanInto(e, startedFields, &p)
	return p, err
}

// endedFields reads an InvocationEnded without its outputs, which the view
// leaves in the event.
var endedFields = fields[InvocationEnded]{
	"v":       intField(func(p *InvocationEnded) *int { return &p.V }),
	"attempt": intField(func(p *InvocationEnded) *int { return &p.Attempt }),
	"exit_code": func(p *InvocationEnded, v jsonValue) error {
		if v.isNull() {
			p.ExitCode = nil
			return nil
		}
		n, err := v.Int()
		code := int(n)
		p.ExitCode = &code
		return err
	},
	"duration_ms":      int64Field(func(p *InvocationEnded) *int64 { return &p.DurationMS }),
	"result_truncated": boolField(func(p *InvocationEnded) *bool { return &p.ResultTruncated }),
	"logs_truncated":   boolField(func(p *InvocationEnded) *bool { return &p.LogsTruncated }),
	"error":            stringField(func(p *InvocationEnded) *string { return &p.Error }),
	"error_type":       stringField(func(p *InvocationEnded) *function.ErrorType { return &p.ErrorType }),
}

func decodeEnded(e *eventlog.Event) (p InvocationEnded, err error) {
	err = scanInto(e, endedFields, &p)
	return p, err
}

// outputFields reads the outputs of an ended or retried event into a
// record.
var outputFields = fields[storedInvocation]{
	"result":            stringField(func(r *storedInvocation) *string { return &r.Result }),
	"logs":              stringField(func(r *storedInvocation) *string { return &r.Logs }),
	"lambda_error_type": stringField(func(r *storedInvocation) *string { return &r.LambdaErrorType }),
	"init_duration":     int64Field(func(r *storedInvocation) *int64 { return &r.InitDuration }),
}
