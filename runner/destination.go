package runner

import (
	"cmp"
	"encoding/json"
	"strings"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/agent"
	"github.com/oklog/ulid/v2"
)

// Destinations: when an async invocation ends, its function's OnSuccess or
// OnFailure destination gets Lambda's destination record. A function of
// this server is invoked async with it, that invocation's queued event
// committed with the end, so that neither is on record without the
// other; a URL is POSTed the record as a callback is.

// The conditions of a destination record, as Lambda's.
const (
	conditionSuccess   = "Success"
	conditionRetries   = "RetriesExhausted"
	conditionEventAged = "EventAgeExceeded"
)

// destined is what an ended invocation's destination needs: the queued
// event of the destination function's invocation, to commit with the
// end, or a URL to send the record to once the end is recorded.
type destined struct {
	queued *eventlog.Event
	next   *item // the queued invocation's, its created time set once committed
	url    string
	record []byte
}

// destinationRecord is Lambda's record of an invocation for its
// destination.
type destinationRecord struct {
	Version         string          `json:"version"`
	Timestamp       string          `json:"timestamp"`
	RequestContext  destRequest     `json:"requestContext"`
	RequestPayload  json.RawMessage `json:"requestPayload"`
	ResponseContext destResponse    `json:"responseContext"`
	ResponsePayload json.RawMessage `json:"responsePayload"`
}

type destRequest struct {
	RequestID              string `json:"requestId"`
	FunctionArn            string `json:"functionArn"`
	Condition              string `json:"condition"`
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

type destResponse struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion"`
	FunctionError   string `json:"functionError,omitempty"`
}

// destination is what the end of invocation id of f, ended as ended on
// condition, sends to its function's destination; nothing when it has
// none for that end, or it cannot be sent (said in the server's log).
func (s *Service) destination(f projections.Function, id string, ended projections.InvocationEnded, condition string) destined {
	d := f.Destinations
	if d == nil {
		return destined{}
	}
	target := d.OnSuccess
	if condition != conditionSuccess {
		target = d.OnFailure
	}
	if target == "" {
		return destined{}
	}
	log := s.logger.With("invocation_id", id, "function_id", f.ID, "destination", target)
	dest, err := function.ParseDestination("destination", target)
	if err != nil {
		log.Warn("not sent to its destination", "err", err)
		return destined{}
	}
	q, err := s.views.Queued(id)
	if err != nil {
		log.Warn("not sent to its destination", "err", err)
		return destined{}
	}
	depth := 1
	if q.DestinationOf != nil {
		depth = q.DestinationOf.Depth + 1
	}
	if depth > function.MaxDestinationDepth {
		log.Warn("not sent to its destination: it ends a chain of destinations as long as they may be", "depth", depth-1)
		return destined{}
	}
	record := s.destinationRecord(f, id, q, ended, condition)
	if dest.URL != "" {
		return destined{url: dest.URL, record: record}
	}
	rf, err := s.resolve(dest.Function, dest.Qualifier)
	if err == nil {
		var req function.Request
		req, err = function.Request{Event: record, Qualifier: dest.Qualifier, TraceID: q.TraceID,
			DestinationOf: &function.DestinationOf{InvocationID: id, Condition: condition, Depth: depth}}.Check()
		if err == nil {
			var e eventlog.Event
			if e, err = queuedEvent(rf, ulid.Make().String(), req, true); err == nil {
				return destined{queued: &e, next: &item{id: e.InvocationID, fnID: rf.ID, version: rf.Published, attempt: 1, size: int64(len(record))}}
			}
		}
	}
	log.Warn("not sent to its destination", "err", err)
	return destined{}
}

// destinationRecord is the record of invocation id for its destination.
func (s *Service) destinationRecord(f projections.Function, id string, q projections.InvocationQueued, ended projections.InvocationEnded, condition string) []byte {
	version := q.ExecutedVersion
	if version == "" {
		version = function.Latest
	}
	rec := destinationRecord{
		Version: "1.0", Timestamp: time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		RequestContext: destRequest{RequestID: id, Condition: condition, ApproximateInvokeCount: max(ended.Attempt, 1),
			FunctionArn: "arn:aws:lambda:" + cmp.Or(s.opts.Region, agent.DefaultRegion) + ":000000000000:function:" + f.Name + ":" + version},
		RequestPayload:  q.Event,
		ResponseContext: destResponse{StatusCode: 200, ExecutedVersion: version},
	}
	if len(rec.RequestPayload) == 0 {
		rec.RequestPayload = json.RawMessage("{}")
	}
	switch {
	case ended.ErrorType != "":
		rec.ResponseContext.FunctionError = "Unhandled"
		rec.ResponsePayload = projections.ErrorDocument(ended.LambdaErrorType, ended.Result, ended.ErrorType, ended.Error)
	case json.Valid([]byte(ended.Result)) && strings.TrimSpace(ended.Result) != "":
		rec.ResponsePayload = json.RawMessage(ended.Result)
	default:
		rec.ResponsePayload, _ = json.Marshal(ended.Result)
	}
	b, _ := json.Marshal(rec)
	return b
}

// sent hands the destination its record, once the end is recorded:
// a destination function's invocation goes to the queue (its queued event
// was committed with the end, at the time at), a URL gets the record.
func (s *Service) sent(d destined, id string, f projections.Function, at time.Time) {
	switch {
	case d.next != nil:
		d.next.created = at
		s.queue.push(d.next)
	case d.url != "":
		s.callbacks.deliver(f.ID, id, d.url, d.record)
	}
}
