package http

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/engine"
)

// Errors: one classification (statuses and classify) of what a handler
// failed with, into a status and a message, and one writer for each wire
// format over it:
//
//   - writeError, the native API's {"error", "field"}, field naming the
//     setting a 400 is about when it is about one (function.FieldError);
//   - writeLambdaError, the Lambda API's {"Type", "Message", "message"}
//     with X-Amzn-Errortype;
//   - writeHookError, a function URL's {"message"}, which says nothing of
//     the function behind it.
//
// An answer a handler decides itself (a 401, a route that is not there)
// is a statusError, which each writer passes on as it is.

type errorBody struct {
	Error string `json:"error"`
	// Field is the JSON member path of the setting a 400 is about, when
	// it is about one.
	Field string `json:"field,omitempty"`
}

// statusError is an answer a handler chose itself: status and msg go to
// the client as they are, and nothing to the log.
type statusError struct {
	status int
	msg    string
}

func (e statusError) Error() string { return e.msg }

// badRequest is a client mistake found by this package.
type badRequest struct{ msg string }

func (e badRequest) Error() string { return e.msg }

// badField is a client mistake found by this package in the member field
// of the body (its JSON path, as the client wrote it).
func badField(field, msg string) error {
	return &function.FieldError{Field: field, Err: badRequest{msg}}
}

// fieldOf is the setting err is about, or "" when it is about none or
// more than one.
func fieldOf(err error) string {
	var fe *function.FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

// internalError is the server's own failure, found by this package: the
// client gets status and msg, the server's log gets err.
type internalError struct {
	err    error
	status int
	msg    string
}

func (e internalError) Error() string { return e.err.Error() }
func (e internalError) Unwrap() error { return e.err }

// statuses maps the errors callers return to status codes: the one table
// of them, consulted in order.
var statuses = []struct {
	err    error
	status int
}{
	{function.ErrInvalid, http.StatusBadRequest},
	{projections.ErrBadCursor, http.StatusBadRequest},
	{engine.ErrBadImage, http.StatusBadRequest},
	{errBadTar, http.StatusBadRequest},
	{projections.ErrNotFound, http.StatusNotFound},
	{function.ErrConflict, http.StatusConflict},
	{function.ErrTooLarge, http.StatusRequestEntityTooLarge},
	{function.ErrBusy, http.StatusTooManyRequests},
	{engine.ErrEngineUnavailable, http.StatusServiceUnavailable},
}

// writeError answers err in the native API's shape. classify maps it to a
// status code, the one place that does: what the client could not have
// caused is a 500 with a generic message, and is logged there, once. A
// 400 about one setting names it in field.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := s.classify(w, r, err)
	body := errorBody{Error: msg}
	if status == http.StatusBadRequest {
		body.Field = fieldOf(err)
	}
	writeJSON(w, status, body)
}

// classify is the choice of status and message for err, which each wire
// format's writer writes in its shape; it may set headers.
func (s *Server) classify(w http.ResponseWriter, r *http.Request, err error) (int, string) {
	var se statusError
	if errors.As(err, &se) {
		return se.status, se.msg
	}
	var br badRequest
	var tooBig *http.MaxBytesError
	status := http.StatusInternalServerError
	switch {
	case errors.As(err, &tooBig):
		status, err = http.StatusRequestEntityTooLarge, fmt.Errorf("request body is larger than %d bytes", tooBig.Limit)
	case errors.As(err, &br):
		status = http.StatusBadRequest
	case errors.As(err, new(errTooSlow)):
		w.Header().Set("Connection", "close")
		status, err = http.StatusRequestTimeout, fmt.Errorf("the request body came slower than %d bytes a second", s.opts.MinBodyRate)
	case errors.Is(err, eventlog.ErrClosed):
		status, err = http.StatusServiceUnavailable, errors.New("the server is shutting down")
	case errors.Is(err, eventlog.ErrUnwritable):
		// Nothing ran: 503, which clients retry by themselves. An invocation
		// that ran and is not yet recorded is 507, which they do not: it
		// must not run twice.
		var ran interface{ InvocationID() string }
		if errors.As(err, &ran) {
			err = internalError{err: err, status: http.StatusInsufficientStorage, msg: fmt.Sprintf(
				"insufficient storage: invocation %s ran, but the server's event log cannot record its end yet (is its disk full?): "+
					"do not run it again; GET /invocations/%s shows it once recorded", ran.InvocationID(), ran.InvocationID())}
			break
		}
		w.Header().Set("Retry-After", "5")
		err = internalError{err: err, status: http.StatusServiceUnavailable,
			msg: "insufficient storage: the server's event log cannot be written right now (is its disk full?); nothing was done; try again later"}
	default:
		for _, e := range statuses {
			if errors.Is(err, e.err) {
				status = e.status
				break
			}
		}
	}
	msg := err.Error()
	var ie internalError
	switch {
	case errors.As(err, &ie):
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", ie.status, "err", err)
		status, msg = ie.status, ie.msg
	case status == http.StatusInternalServerError:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error; the server's log has the details"
	}
	return status, msg
}

// lambdaError is an error in Lambda's terms.
type lambdaError struct {
	status int
	typ    string
	msg    string
}

func (e lambdaError) Error() string { return e.msg }

func lambdaInvalid(format string, args ...any) error {
	return lambdaError{http.StatusBadRequest, "InvalidParameterValueException", fmt.Sprintf(format, args...)}
}

// writeLambdaError answers err in the Lambda API's shape, as Lambda would:
// a lambdaError as it is, the SigV4 check's refusals as Lambda's, the
// rest as classify says, with Lambda's type for its status.
func (s *Server) writeLambdaError(w http.ResponseWriter, r *http.Request, err error) {
	var le lambdaError
	switch {
	case errors.As(err, &le):
	case errors.Is(err, errKey):
		le = lambdaError{http.StatusForbidden, "UnrecognizedClientException", err.Error()}
	case errors.Is(err, errSignature):
		le = lambdaError{http.StatusForbidden, "InvalidSignatureException", err.Error()}
	default:
		status, msg := s.classify(w, r, err)
		le = lambdaError{status: status, msg: msg}
		switch {
		case status == http.StatusNotFound:
			le.typ = "ResourceNotFoundException"
		case status == http.StatusConflict:
			le.typ = "ResourceConflictException"
		case status == http.StatusTooManyRequests:
			le.typ = "TooManyRequestsException"
		case errors.Is(err, function.ErrTooLarge):
			// What Lambda calls a code package past its limit.
			le.typ = "RequestEntityTooLargeException"
		case status == http.StatusRequestEntityTooLarge:
			le.typ = "RequestTooLargeException"
		case status < 500:
			le.status, le.typ = http.StatusBadRequest, "InvalidParameterValueException"
		default:
			le.typ = "ServiceException"
		}
	}
	kind := "User"
	if le.status >= 500 {
		kind = "Service"
	}
	w.Header().Set("X-Amzn-Errortype", le.typ)
	writeJSON(w, le.status, map[string]string{"Type": kind, "Message": le.msg, "message": le.msg})
}

// writeHookError answers a hook request in a function URL's shape, with a
// status and a message that say nothing of the function behind it: its own
// refusals (statusError) as they are, and an invocation the server could
// not run with busy and unavailable as the rest of the API says them, the
// rest without detail.
func (s *Server) writeHookError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := s.classify(w, r, err)
	switch {
	case errors.As(err, new(statusError)):
	case status == http.StatusTooManyRequests, status == http.StatusServiceUnavailable, status == http.StatusInsufficientStorage:
	case status < 500:
		msg = http.StatusText(status)
	default:
		status, msg = http.StatusBadGateway, "Internal Server Error"
	}
	writeJSON(w, status, map[string]string{"message": msg})
}
