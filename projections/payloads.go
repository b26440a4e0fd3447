package projections

import (
	"fmt"

	"github.com/minilambda/minilambda/eventlog"
)

// The decoders below read the fields the views need from the payloads
// every invocation writes, with scanObject. Unknown members are skipped, so
// later payload versions that add fields still decode; a known member of
// the wrong type is an error.

func payloadErr(e *eventlog.Event, err error) error {
	return fmt.Errorf("%s payload: %w", e.Type, err)
}

func decodeQueued(e *eventlog.Event) (p InvocationQueued, err error) {
	err = scanObject(e.Data, func(k []byte, v jsonValue) error {
		var err error
		switch string(k) {
		case "v":
			var n int64
			n, err = v.Int()
			p.V = int(n)
		case "function_name":
			p.FunctionName, err = v.String()
		case "function_version":
			var n int64
			n, err = v.Int()
			p.FunctionVersion = int(n)
		case "async":
			p.Async, err = v.Bool()
		}
		return err
	})
	if err != nil {
		return p, payloadErr(e, err)
	}
	return p, nil
}

func decodeStarted(e *eventlog.Event) (p InvocationStarted, err error) {
	err = scanObject(e.Data, func(k []byte, v jsonValue) error {
		var err error
		switch string(k) {
		case "v":
			var n int64
			n, err = v.Int()
			p.V = int(n)
		case "attempt":
			var n int64
			n, err = v.Int()
			p.Attempt = int(n)
		case "container_id":
			p.ContainerID, err = v.String()
		case "image_digest":
			p.ImageDigest, err = v.String()
		}
		return err
	})
	if err != nil {
		return p, payloadErr(e, err)
	}
	return p, nil
}

// decodeEnded reads an InvocationEnded without its outputs, which the view
// leaves in the event.
func decodeEnded(e *eventlog.Event) (p InvocationEnded, err error) {
	err = scanObject(e.Data, func(k []byte, v jsonValue) error {
		var err error
		var n int64
		switch string(k) {
		case "v":
			n, err = v.Int()
			p.V = int(n)
		case "attempt":
			n, err = v.Int()
			p.Attempt = int(n)
		case "exit_code":
			if !v.isNull() {
				n, err = v.Int()
				code := int(n)
				p.ExitCode = &code
			}
		case "duration_ms":
			p.DurationMS, err = v.Int()
		case "result_truncated":
			p.ResultTruncated, err = v.Bool()
		case "logs_truncated":
			p.LogsTruncated, err = v.Bool()
		case "error":
			p.Error, err = v.String()
		case "error_type":
			p.ErrorType, err = v.String()
		}
		return err
	})
	if err != nil {
		return p, payloadErr(e, err)
	}
	return p, nil
}
