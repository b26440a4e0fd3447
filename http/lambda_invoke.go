package http

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// Invoke of the Lambda API: the body is the event, the answer the
// function's response, its failure in Lambda's error shape.

// lambdaInvoke is Invoke: the body is the event; RequestResponse answers
// with the function's response, Event queues it, DryRun checks.
func (s *Server) lambdaInvoke(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, req, ok := s.lambdaRequest(w, r, p)
	if !ok {
		return
	}
	switch typ := cmp.Or(r.Header.Get("X-Amz-Invocation-Type"), "RequestResponse"); typ {
	case "DryRun":
		s.dryRun(w, r, ref, req.Qualifier)
	case "Event":
		inv, err := s.opts.Invoker.Enqueue(r.Context(), ref, req)
		if err != nil {
			s.writeLambdaError(w, r, s.notFound(ref, err))
			return
		}
		w.Header().Set("X-Amzn-Requestid", inv.InvocationID)
		w.WriteHeader(http.StatusAccepted)
	case "RequestResponse":
		inv, err := s.opts.Invoker.Invoke(r.Context(), ref, req)
		if err != nil {
			s.writeLambdaError(w, r, s.notFound(ref, err))
			return
		}
		h := w.Header()
		h.Set("X-Amzn-Requestid", inv.InvocationID)
		h.Set("X-Trace-Id", inv.TraceID)
		h.Set("X-Amz-Executed-Version", inv.ExecutedVersion)
		if tail, ok := logTail(r, inv); ok {
			h.Set("X-Amz-Log-Result", tail)
		}
		h.Set("Content-Type", "application/json")
		if inv.Status != projections.StatusCompleted {
			h.Set("X-Amz-Function-Error", "Unhandled")
			w.WriteHeader(http.StatusOK)
			w.Write(functionError(inv))
			return
		}
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, inv.Result)
	default:
		s.writeLambdaError(w, r, lambdaInvalid("X-Amz-Invocation-Type %q: use RequestResponse, Event or DryRun", typ))
	}
}

// lambdaRequest reads an invocation's function, qualifier and payload,
// which must be JSON ({} when empty); on an error it has answered.
func (s *Server) lambdaRequest(w http.ResponseWriter, r *http.Request, p httprouter.Params) (string, function.Request, bool) {
	ref, qualifier, err := lambdaName(r, p)
	if err != nil {
		s.writeLambdaError(w, r, err)
		return "", function.Request{}, false
	}
	body, err := s.bodyOf(w, r)
	if err != nil {
		s.writeLambdaError(w, r, wrapBody("the request payload", err))
		return "", function.Request{}, false
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		s.writeLambdaError(w, r, lambdaError{http.StatusBadRequest, "InvalidRequestContentException", "could not parse request body into json: the payload is not JSON"})
		return "", function.Request{}, false
	}
	return ref, function.Request{Event: json.RawMessage(body), Qualifier: qualifier, TraceID: traceOf(r)}, true
}

// dryRun answers an invocation of type DryRun: 204 when the function
// and qualifier are there.
func (s *Server) dryRun(w http.ResponseWriter, r *http.Request, ref, qualifier string) {
	if _, _, err := s.qualified(ref, qualifier); err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// logTail is the base64 of the last tailBytes of inv's logs, when r asks
// for them (X-Amz-Log-Type: Tail).
func logTail(r *http.Request, inv projections.Invocation) (string, bool) {
	if r.Header.Get("X-Amz-Log-Type") != "Tail" {
		return "", false
	}
	logs := inv.Logs
	if len(logs) > tailBytes {
		logs = logs[len(logs)-tailBytes:]
	}
	return base64.StdEncoding.EncodeToString([]byte(logs)), true
}

// functionError is the body of a failed invocation: a lambda function's
// own error document, or one made from the record.
func functionError(inv projections.Invocation) []byte {
	return projections.ErrorDocument(inv.LambdaErrorType, inv.Result, inv.ErrorType, inv.Error)
}

// streamChunk is the most of a response one PayloadChunk event carries.
const streamChunk = 64 << 10

// lambdaInvokeStream is InvokeWithResponseStream: a sync invocation whose
// response goes out as application/vnd.amazon.eventstream, the framing
// the SDKs decode: the function's response in PayloadChunk events, then
// an InvokeComplete event, which carries the error of a failed invocation
// and, asked for, the tail of its logs. The response is whole before the
// first chunk goes: functions here answer at once, not in parts.
func (s *Server) lambdaInvokeStream(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, req, ok := s.lambdaRequest(w, r, p)
	if !ok {
		return
	}
	switch typ := r.Header.Get("X-Amz-Invocation-Type"); typ {
	case "", "RequestResponse":
	case "DryRun":
		s.dryRun(w, r, ref, req.Qualifier)
		return
	default:
		s.writeLambdaError(w, r, lambdaInvalid("X-Amz-Invocation-Type %.40q: use RequestResponse or DryRun", typ))
		return
	}
	inv, err := s.opts.Invoker.Invoke(r.Context(), ref, req)
	if err != nil {
		s.writeLambdaError(w, r, s.notFound(ref, err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/vnd.amazon.eventstream")
	h.Set("X-Amzn-Requestid", inv.InvocationID)
	h.Set("X-Trace-Id", inv.TraceID)
	h.Set("X-Amz-Executed-Version", inv.ExecutedVersion)
	w.WriteHeader(http.StatusOK)

	enc := eventstream.NewEncoder()
	event := func(typ, contentType string, payload []byte) error {
		return enc.Encode(w, eventstream.Message{Headers: eventstream.Headers{
			{Name: ":message-type", Value: eventstream.StringValue("event")},
			{Name: ":event-type", Value: eventstream.StringValue(typ)},
			{Name: ":content-type", Value: eventstream.StringValue(contentType)},
		}, Payload: payload})
	}
	complete := map[string]string{}
	if inv.Status == projections.StatusCompleted {
		for rest := []byte(inv.Result); len(rest) > 0; {
			n := min(len(rest), streamChunk)
			if err := event("PayloadChunk", "application/octet-stream", rest[:n]); err != nil {
				return // the client went away
			}
			rest = rest[n:]
		}
	} else {
		var doc struct {
			Message string `json:"errorMessage"`
			Type    string `json:"errorType"`
		}
		detail := functionError(inv)
		json.Unmarshal(detail, &doc)
		complete["ErrorCode"] = doc.Type
		complete["ErrorDetails"] = strings.TrimSpace(string(detail))
		if complete["ErrorCode"] == "" {
			complete["ErrorCode"] = "Unhandled"
		}
	}
	if tail, ok := logTail(r, inv); ok {
		complete["LogResult"] = tail
	}
	doc, _ := json.Marshal(complete)
	if err := event("InvokeComplete", "application/json", doc); err != nil {
		s.log.Debug("the stream's client went away", "invocation_id", inv.InvocationID, "err", err)
	}
}
