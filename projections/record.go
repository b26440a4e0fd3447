package projections

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/minilambda/minilambda/function"
)

// Invocation records are stored in a compact binary form rather than JSON:
// a rebuild writes one per invocation, and encoding/json spent more time
// on them than everything else together. stdout and stderr are not copied
// into the record: it keeps the seq of the event that ended the
// invocation, and readers take them from there.

const recordV1 = 1

var errRecord = errors.New("malformed invocation record")

// storedInvocation is an invocation record as the view keeps it.
type storedInvocation struct {
	Invocation
	EndSeq    uint64 // seq of the event holding the last attempt's outputs: ended or retried
	QueuedSeq uint64 // seq of the queued event, which holds the input
	LastSeq   uint64 // seq of the invocation's latest event: its timeline is QueuedSeq to LastSeq
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t *time.Time) []byte {
	if t == nil {
		return binary.AppendVarint(b, math.MinInt64)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

const (
	flagAsync = 1 << iota
	flagResultTruncated
	flagLogsTruncated
	flagHasExit
	// flagQualified: the record ends with the executed version and the
	// alias, for an invocation that named either; records written before
	// versions existed lack both and ran $LATEST.
	flagQualified
	// flagContext: then the trace id, the CloudEvent's four attributes
	// (empty without one), the schedule id and the instant it was due.
	flagContext
)

func (r *storedInvocation) marshal() []byte {
	b := make([]byte, 0, 160+len(r.FunctionID)+len(r.Error)+len(r.ContainerID)+len(r.ImageDigest))
	b = append(b, recordV1)
	var flags uint64
	if r.Async {
		flags |= flagAsync
	}
	if r.ResultTruncated {
		flags |= flagResultTruncated
	}
	if r.LogsTruncated {
		flags |= flagLogsTruncated
	}
	exit := 0
	if r.ExitCode != nil {
		flags |= flagHasExit
		exit = *r.ExitCode
	}
	qualified := r.ExecutedVersion != "" && r.ExecutedVersion != function.Latest || r.Alias != ""
	if qualified {
		flags |= flagQualified
	}
	withContext := r.TraceID != "" || r.CloudEvent != nil || r.ScheduleID != "" || r.ScheduledAt != nil
	if withContext {
		flags |= flagContext
	}
	b = binary.AppendUvarint(b, flags)
	b = appendString(b, r.FunctionID)
	b = appendString(b, r.FunctionName)
	b = binary.AppendVarint(b, int64(r.FunctionVersion))
	b = appendString(b, r.Status)
	b = binary.AppendVarint(b, int64(exit))
	b = appendString(b, r.Error)
	b = appendString(b, string(r.ErrorType))
	b = binary.AppendVarint(b, r.Duration)
	b = appendTime(b, &r.CreatedAt)
	b = appendTime(b, r.StartedAt)
	b = appendTime(b, r.CompletedAt)
	b = appendTime(b, r.NextAttemptAt)
	b = binary.AppendVarint(b, int64(r.Attempts))
	b = appendString(b, r.ContainerID)
	b = appendString(b, r.ImageDigest)
	b = binary.AppendUvarint(b, r.EndSeq)
	b = binary.AppendUvarint(b, r.QueuedSeq)
	b = binary.AppendUvarint(b, r.LastSeq)
	if qualified {
		b = appendString(b, r.ExecutedVersion)
		b = appendString(b, r.Alias)
	}
	if withContext {
		b = appendString(b, r.TraceID)
		var ce CloudEventAttrs
		if r.CloudEvent != nil {
			ce = *r.CloudEvent
		}
		for _, s := range []string{ce.SpecVersion, ce.ID, ce.Source, ce.Type} {
			b = appendString(b, s)
		}
		b = appendString(b, r.ScheduleID)
		b = appendTime(b, r.ScheduledAt)
	}
	return b
}

type reader struct {
	b   []byte
	err error
}

func (d *reader) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *reader) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *reader) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errRecord
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *reader) time() *time.Time {
	v := d.varint()
	if v == math.MinInt64 || d.err != nil {
		return nil
	}
	t := time.Unix(0, v).UTC()
	return &t
}

func (r *storedInvocation) unmarshal(id string, b []byte) error {
	if len(b) == 0 || b[0] != recordV1 {
		return fmt.Errorf("invocation %s: %w", id, errRecord)
	}
	d := reader{b: b[1:]}
	flags := d.uvarint()
	*r = storedInvocation{}
	r.InvocationID = id
	r.FunctionID = d.string()
	r.FunctionName = d.string()
	r.FunctionVersion = int(d.varint())
	r.Status = d.string()
	exit := int(d.varint())
	r.Error = d.string()
	r.ErrorType = function.ErrorType(d.string())
	r.Duration = d.varint()
	if t := d.time(); t != nil {
		r.CreatedAt = *t
	}
	r.StartedAt = d.time()
	r.CompletedAt = d.time()
	r.NextAttemptAt = d.time()
	r.Attempts = int(d.varint())
	r.ContainerID = d.string()
	r.ImageDigest = d.string()
	r.EndSeq = d.uvarint()
	r.QueuedSeq = d.uvarint()
	r.LastSeq = d.uvarint()
	if flags&flagQualified != 0 {
		r.ExecutedVersion = d.string()
		r.Alias = d.string()
	}
	if r.ExecutedVersion == "" {
		r.ExecutedVersion = function.Latest
	}
	if flags&flagContext != 0 {
		r.TraceID = d.string()
		ce := CloudEventAttrs{SpecVersion: d.string(), ID: d.string(), Source: d.string(), Type: d.string()}
		if ce != (CloudEventAttrs{}) {
			r.CloudEvent = &ce
		}
		r.ScheduleID = d.string()
		r.ScheduledAt = d.time()
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errRecord
	}
	if d.err != nil {
		return fmt.Errorf("invocation %s: %w", id, d.err)
	}
	r.Async = flags&flagAsync != 0
	r.ResultTruncated = flags&flagResultTruncated != 0
	r.LogsTruncated = flags&flagLogsTruncated != 0
	r.Truncated = r.ResultTruncated || r.LogsTruncated
	if flags&flagHasExit != 0 {
		r.ExitCode = &exit
	}
	r.Timestamp = r.CompletedAt
	return nil
}
