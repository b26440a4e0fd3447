package projections

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
)

// View names: each is a bucket of the log's file, see eventlog.
const (
	viewFunctions        = "functions"         // id -> Function (live)
	viewFunctionNames    = "function_names"    // name -> id (live)
	viewFunctionVersions = "function_versions" // id 0 version(4) -> Function, deleted ones too
	// The invocations view keeps records and both indexes in one bucket,
	// told apart by a key prefix: every invocation event touches all three,
	// and one bucket's pages are fewer to write and fsync per commit than
	// three buckets'.
	viewInvocations = "invocations"
	prefixRecord    = "r" // r invocation id -> storedInvocation
	prefixFunction  = "f" // f function id 0 invocation id -> ""
	prefixStatus    = "s" // s status 0 invocation id -> ""
	prefixTrace     = "t" // t trace id 0 invocation id -> ""
)

func recordKey(id string) []byte { return append([]byte(prefixRecord), id...) }

func functionKey(fn, id string) []byte { return indexKey(prefixFunction+fn, id) }

func statusKey(status, id string) []byte { return indexKey(prefixStatus+status, id) }

func traceKey(trace, id string) []byte { return indexKey(prefixTrace+trace, id) }

// version names the layout above; changing it rebuilds the views on open.
const version = "views-v4"

// ErrInconsistent means an event does not fit the views: an invocation
// that was never queued, a function that does not exist. Appends check
// first, so on replay it means the log was tampered with.
var ErrInconsistent = errors.New("event does not fit the views")

// Projector keeps the functions and invocations views. It is stateless;
// pass it to eventlog.Open.
type Projector struct{}

var _ eventlog.Projector = Projector{}

// Version implements eventlog.Projector.
func (Projector) Version() string { return version }

// Begin implements eventlog.Projector.
func (Projector) Begin(tx eventlog.ViewTx) eventlog.Batch {
	return &batch{tx: tx, invs: make(map[string]*pendingInvocation)}
}

// batch keeps the invocations a run of events touches decoded in memory
// and writes each once at Flush: an invocation's queued, started and
// completed events usually fall in one run, so a rebuild encodes each
// record once instead of three times.
type batch struct {
	tx   eventlog.ViewTx
	invs map[string]*pendingInvocation
}

type pendingInvocation struct {
	rec        storedInvocation
	origStatus string // status in the store before this batch; "" if new
}

func (b *batch) Apply(e *eventlog.Event) error {
	p, err := Projector{}.Prepare(e)
	if err != nil {
		return err
	}
	return b.ApplyPrepared(e, p)
}

// Prepare implements eventlog.Preparer: it decodes the payloads of the
// invocation events, which are nearly all of a long log.
func (Projector) Prepare(e *eventlog.Event) (any, error) {
	switch e.Type {
	case TypeInvocationQueued:
		return DecodeQueued(e)
	case TypeInvocationStarted:
		return decodeStarted(e)
	case TypeInvocationCompleted, TypeInvocationFailed, TypeInvocationTimedOut:
		return decodeEnded(e)
	}
	return nil, nil
}

// ApplyPrepared implements eventlog.PreparedBatch.
func (b *batch) ApplyPrepared(e *eventlog.Event, prepared any) error {
	switch e.Type {
	case TypeFunctionRegistered:
		return b.functionRegistered(e)
	case TypeFunctionUpdated:
		return b.functionUpdated(e)
	case TypeFunctionDeleted:
		return b.functionDeleted(e)
	case TypeFunctionTagged:
		return b.functionTagged(e)
	case TypeVersionPublished:
		return b.versionPublished(e)
	case TypeAliasCreated, TypeAliasUpdated:
		return b.aliasSet(e)
	case TypeAliasDeleted:
		return b.aliasDeleted(e)
	case TypeScheduleCreated:
		return b.scheduleCreated(e)
	case TypeScheduleDeleted:
		return b.scheduleDeleted(e)
	case TypeInvocationQueued:
		return b.invocationQueued(e, prepared.(InvocationQueued))
	case TypeInvocationStarted, TypeInvocationCompleted, TypeInvocationFailed,
		TypeInvocationTimedOut, TypeInvocationRetried:
		p, err := b.invocation(e.InvocationID)
		if err != nil {
			return err
		}
		return applyInvocation(&p.rec, e, prepared)
	case TypeInvocationCallback:
		// Changes nothing shown, but ends the invocation's timeline.
		p, err := b.invocation(e.InvocationID)
		if err != nil {
			return err
		}
		p.rec.LastSeq = e.Seq
		return nil
	}
	// Other events (images, hot containers, recovery) change no view.
	return nil
}

func (b *batch) Flush() error {
	ids := make([]string, 0, len(b.invs))
	for id := range b.invs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	// Write in key order, records first, then each index: bbolt inserts
	// fastest where the last insert left its cursor.
	for _, id := range ids {
		if err := b.tx.Put(viewInvocations, recordKey(id), b.invs[id].rec.marshal()); err != nil {
			return err
		}
	}
	var dels, puts [][]byte
	for _, id := range ids {
		p := b.invs[id]
		if p.origStatus == p.rec.Status {
			continue
		}
		if p.origStatus == "" {
			puts = append(puts, functionKey(p.rec.FunctionID, id))
			if p.rec.TraceID != "" {
				puts = append(puts, traceKey(p.rec.TraceID, id))
			}
		} else {
			dels = append(dels, statusKey(p.origStatus, id))
		}
		puts = append(puts, statusKey(p.rec.Status, id))
	}
	slices.SortFunc(dels, bytes.Compare)
	slices.SortFunc(puts, bytes.Compare)
	for _, k := range dels {
		if err := b.tx.Delete(viewInvocations, k); err != nil {
			return err
		}
	}
	for _, k := range puts {
		if err := b.tx.Put(viewInvocations, k, nil); err != nil {
			return err
		}
	}
	clear(b.invs)
	return nil
}

func indexKey(prefix, id string) []byte {
	k := make([]byte, 0, len(prefix)+1+len(id))
	k = append(k, prefix...)
	k = append(k, 0)
	return append(k, id...)
}

func versionKey(id string, v int) []byte {
	k := indexKey(id, "")
	return append(k, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func decode(e *eventlog.Event, into any) error {
	if err := json.Unmarshal(e.Data, into); err != nil {
		return fmt.Errorf("%s payload: %w", e.Type, err)
	}
	return nil
}

func (b *batch) putFunction(f *Function) error {
	v, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if err := b.tx.Put(viewFunctionVersions, versionKey(f.ID, f.Version), v); err != nil {
		return err
	}
	if f.Deleted {
		return b.tx.Delete(viewFunctions, []byte(f.ID))
	}
	return b.tx.Put(viewFunctions, []byte(f.ID), v)
}

func (b *batch) liveFunction(id string) (*Function, error) {
	v := b.tx.Get(viewFunctions, []byte(id))
	if v == nil {
		return nil, fmt.Errorf("%w: function %s is not registered", ErrInconsistent, id)
	}
	var f Function
	if err := json.Unmarshal(v, &f); err != nil {
		return nil, fmt.Errorf("function %s: %w", id, err)
	}
	return &f, nil
}

func (b *batch) functionRegistered(e *eventlog.Event) error {
	var p FunctionRegistered
	if err := decode(e, &p); err != nil {
		return err
	}
	if e.FunctionID == "" || p.Name == "" {
		return fmt.Errorf("%w: registration without id or name", ErrInconsistent)
	}
	if b.tx.Get(viewFunctions, []byte(e.FunctionID)) != nil {
		return fmt.Errorf("%w: function %s registered twice", ErrInconsistent, e.FunctionID)
	}
	if b.tx.Get(viewFunctionNames, []byte(p.Name)) != nil {
		return fmt.Errorf("%w: name %q is taken", ErrInconsistent, p.Name)
	}
	f := Function{
		ID: e.FunctionID, Spec: p.Spec, Version: 1,
		CreatedAt: p.CreatedAt, UpdatedAt: p.CreatedAt,
		Imported: p.Imported, OriginalName: p.OriginalName,
	}
	if err := b.tx.Put(viewFunctionNames, []byte(p.Name), []byte(f.ID)); err != nil {
		return err
	}
	return b.putFunction(&f)
}

func (b *batch) functionUpdated(e *eventlog.Event) error {
	var p FunctionUpdated
	if err := decode(e, &p); err != nil {
		return err
	}
	f, err := b.liveFunction(e.FunctionID)
	if err != nil {
		return err
	}
	if p.Version != f.Version+1 {
		return fmt.Errorf("%w: function %s version %d after %d", ErrInconsistent, f.ID, p.Version, f.Version)
	}
	if p.Name != f.Name {
		if b.tx.Get(viewFunctionNames, []byte(p.Name)) != nil {
			return fmt.Errorf("%w: name %q is taken", ErrInconsistent, p.Name)
		}
		if err := b.tx.Delete(viewFunctionNames, []byte(f.Name)); err != nil {
			return err
		}
		if err := b.tx.Put(viewFunctionNames, []byte(p.Name), []byte(f.ID)); err != nil {
			return err
		}
	}
	f.Spec, f.Version, f.UpdatedAt = p.Spec, p.Version, e.Time
	return b.putFunction(f)
}

func (b *batch) functionTagged(e *eventlog.Event) error {
	var p FunctionTagged
	if err := decode(e, &p); err != nil {
		return err
	}
	f, err := b.liveFunction(e.FunctionID)
	if err != nil {
		return err
	}
	f.Tags = p.Tags
	if len(f.Tags) == 0 {
		f.Tags = nil
	}
	return b.putFunction(f)
}

func (b *batch) functionDeleted(e *eventlog.Event) error {
	f, err := b.liveFunction(e.FunctionID)
	if err != nil {
		return err
	}
	if err := b.tx.Delete(viewFunctionNames, []byte(f.Name)); err != nil {
		return err
	}
	if err := b.dropAliases(f.ID); err != nil {
		return err
	}
	if err := b.dropSchedules(f.ID); err != nil {
		return err
	}
	f.Deleted, f.UpdatedAt, f.Version = true, e.Time, f.Version+1
	return b.putFunction(f)
}

func (b *batch) invocationQueued(e *eventlog.Event, p InvocationQueued) error {
	if e.InvocationID == "" || e.FunctionID == "" {
		return fmt.Errorf("%w: invocation without id or function", ErrInconsistent)
	}
	// Invocation ids are fresh ULIDs, so a second queued event for one id
	// cannot be appended; looking each one up would cost a rebuild a seventh
	// of its time. Within a batch it is free to check.
	if _, ok := b.invs[e.InvocationID]; ok {
		return fmt.Errorf("%w: invocation %s queued twice", ErrInconsistent, e.InvocationID)
	}
	// Record builds records without the views (tx nil): nothing to note.
	if b.tx != nil && p.ScheduleID != "" && p.ScheduledAt != nil {
		if err := b.scheduleFired(e.FunctionID, p.ScheduleID, *p.ScheduledAt); err != nil {
			return err
		}
	}
	b.invs[e.InvocationID] = &pendingInvocation{rec: storedInvocation{Invocation: Invocation{
		InvocationID: e.InvocationID, FunctionID: e.FunctionID,
		FunctionName: p.FunctionName, FunctionVersion: p.FunctionVersion,
		ExecutedVersion: p.ExecutedVersion, Alias: p.Alias,
		TraceID: p.TraceID, CloudEvent: p.CloudEvent, ScheduleID: p.ScheduleID, ScheduledAt: p.ScheduledAt,
		Async: p.Async, Status: StatusPending, CreatedAt: e.Time,
	}, QueuedSeq: e.Seq, LastSeq: e.Seq}}
	return nil
}

func (b *batch) invocation(id string) (*pendingInvocation, error) {
	if p, ok := b.invs[id]; ok {
		return p, nil
	}
	v := b.tx.Get(viewInvocations, recordKey(id))
	if v == nil {
		return nil, fmt.Errorf("%w: invocation %q was never queued", ErrInconsistent, id)
	}
	p := &pendingInvocation{}
	if err := p.rec.unmarshal(id, v); err != nil {
		return nil, err
	}
	p.origStatus = p.rec.Status
	b.invs[id] = p
	return p, nil
}

// applyInvocation changes an invocation record for one of its later events.
func applyInvocation(r *storedInvocation, e *eventlog.Event, prepared any) error {
	if r.Status == StatusCompleted || r.Status == StatusFailed {
		return fmt.Errorf("%w: %s after invocation %s ended", ErrInconsistent, e.Type, r.InvocationID)
	}
	t := e.Time
	r.LastSeq = e.Seq
	switch e.Type {
	case TypeInvocationStarted:
		p := prepared.(InvocationStarted)
		r.Status, r.StartedAt, r.Attempts = StatusRunning, &t, p.Attempt
		r.ContainerID, r.ImageDigest, r.NextAttemptAt = p.ContainerID, p.ImageDigest, nil
		r.Error, r.ErrorType, r.ExitCode, r.Duration, r.EndSeq = "", "", nil, 0, 0
	case TypeInvocationRetried:
		var p InvocationRetried
		if err := decode(e, &p); err != nil {
			return err
		}
		nb := p.NotBefore
		r.Status, r.Attempts, r.Error, r.NextAttemptAt = StatusPending, p.Attempt, p.Reason, &nb
		// The record shows the failed attempt until the next one starts.
		r.ErrorType, r.ExitCode, r.Duration, r.EndSeq = p.ErrorType, p.ExitCode, p.DurationMS, e.Seq
	default:
		p := prepared.(InvocationEnded)
		r.Status = StatusFailed
		if e.Type == TypeInvocationCompleted {
			r.Status = StatusCompleted
		}
		r.ExitCode, r.EndSeq = p.ExitCode, e.Seq
		r.Error, r.ErrorType, r.Duration = p.Error, p.ErrorType, p.DurationMS
		if e.Type == TypeInvocationTimedOut && r.ErrorType == "" {
			r.ErrorType = function.ErrorTimeout
		}
		r.ResultTruncated, r.LogsTruncated = p.ResultTruncated, p.LogsTruncated
		r.Truncated = p.ResultTruncated || p.LogsTruncated
		if p.Attempt > r.Attempts {
			r.Attempts = p.Attempt
		}
		r.CompletedAt, r.NextAttemptAt = &t, nil
	}
	return nil
}
