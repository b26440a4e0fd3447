package http

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"

	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// Invoke of the Lambda API: the body is the event, the answer the
// function's response, its failure in Lambda's error shape.

// lambdaInvoke is Invoke: the body is the event; RequestResponse answers
// with the function's response, Event queues it, DryRun checks.
func (s *Server) lambdaInvoke(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, qualifier, err := lambdaName(r, p)
	if err != nil {
		s.writeLambdaError(w, r, err)
		return
	}
	body, err := s.bodyOf(w, r)
	if err != nil {
		s.writeLambdaError(w, r, wrapBody("the request payload", err))
		return
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		s.writeLambdaError(w, r, lambdaError{http.StatusBadRequest, "InvalidRequestContentException", "could not parse request body into json: the payload is not JSON"})
		return
	}
	req := function.Request{Event: json.RawMessage(body), Qualifier: qualifier,
		TraceID: traceOf(r)}
	switch typ := cmp.Or(r.Header.Get("X-Amz-Invocation-Type"), "RequestResponse"); typ {
	case "DryRun":
		if _, _, err := s.qualified(ref, qualifier); err != nil {
			s.writeLambdaError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
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
		if r.Header.Get("X-Amz-Log-Type") == "Tail" {
			logs := inv.Logs
			if len(logs) > tailBytes {
				logs = logs[len(logs)-tailBytes:]
			}
			h.Set("X-Amz-Log-Result", base64.StdEncoding.EncodeToString([]byte(logs)))
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

// functionError is the body of a failed invocation: a lambda function's
// own error document, or one made from the record.
func functionError(inv projections.Invocation) []byte {
	return projections.ErrorDocument(inv.LambdaErrorType, inv.Result, inv.ErrorType, inv.Error)
}
