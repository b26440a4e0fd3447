package projections

import (
	"fmt"

	"github.com/minilambda/minilambda/eventlog"
)

// The decoders below read the fields the views need from the payloads
// every invocation writes, with scanObject. Unknown members are skipped, so
// later payload versions that add fields still decode; a known member of
// the wrong type is an error.

// fields maps member names to what reads them.
type fields map[string]func(jsonValue) error

func intInto(dst *int) func(jsonValue) error {
	return func(v jsonValue) error {
		n, err := v.Int()
		*dst = int(n)
		return err
	}
}

func stringInto(dst *string) func(jsonValue) error {
	return func(v jsonValue) (err error) {
		*dst, err = v.String()
		return err
	}
}

func boolInto(dst *bool) func(jsonValue) error {
	return func(v jsonValue) (err error) {
		*dst, err = v.Bool()
		return err
	}
}

// scanInto reads e's payload through f.
func scanInto(e *eventlog.Event, f fields) error {
	err := scanObject(e.Data, func(k []byte, v jsonValue) error {
		if read := f[string(k)]; read != nil {
			return read(v)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s payload: %w", e.Type, err)
	}
	return nil
}

func decodeQueued(e *eventlog.Event) (p InvocationQueued, err error) {
	err = scanInto(e, fields{
		"v":                intInto(&p.V),
		"function_name":    stringInto(&p.FunctionName),
		"function_version": intInto(&p.FunctionVersion),
		"async":            boolInto(&p.Async),
	})
	return p, err
}

func decodeStarted(e *eventlog.Event) (p InvocationStarted, err error) {
	err = scanInto(e, fields{
		"v":            intInto(&p.V),
		"attempt":      intInto(&p.Attempt),
		"container_id": stringInto(&p.ContainerID),
		"image_digest": stringInto(&p.ImageDigest),
	})
	return p, err
}

// decodeEnded reads an InvocationEnded without its outputs, which the view
// leaves in the event.
func decodeEnded(e *eventlog.Event) (p InvocationEnded, err error) {
	err = scanInto(e, fields{
		"v":       intInto(&p.V),
		"attempt": intInto(&p.Attempt),
		"exit_code": func(v jsonValue) error {
			if v.isNull() {
				p.ExitCode = nil
				return nil
			}
			n, err := v.Int()
			code := int(n)
			p.ExitCode = &code
			return err
		},
		"duration_ms": func(v jsonValue) (err error) {
			p.DurationMS, err = v.Int()
			return err
		},
		"result_truncated": boolInto(&p.ResultTruncated),
		"logs_truncated":   boolInto(&p.LogsTruncated),
		"error":            stringInto(&p.Error),
		"error_type":       stringInto(&p.ErrorType),
	})
	return p, err
}
