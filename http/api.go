package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// routeAPI registers the native API's functions, invocations and images,
// in the group that needs the token.
func (s *Server) routeAPI(r group) {
	r.POST("/functions", s.createFunction)
	r.GET("/functions", s.listFunctions)
	r.GET("/functions/:id", s.getFunction)
	r.PUT("/functions/:id", s.updateFunction)
	r.DELETE("/functions/:id", s.deleteFunction)
	r.PUT("/functions/:id/code", s.updateCode)
	r.POST("/invoke/:id", s.invoke)
	r.POST("/invoke/:id/async", s.invokeAsync)
	r.GET("/invocations", s.listInvocations)
	r.GET("/invocations/:id", s.getInvocation)
	r.POST("/images", s.loadImage)
	r.GET("/images", s.listImages)
}

// shown is a function as the API shows it: its trigger's secret is
// write-only.
func shown(f projections.Function) shownFunction {
	f.HTTPTrigger = f.HTTPTrigger.Redacted()
	return shownFunction{Function: f, TimeoutSec: f.Timeout}
}

// ref returns the {id} of the path, or answers 400 when it cannot be an id
// or a name.
func (s *Server) ref(w http.ResponseWriter, r *http.Request, p httprouter.Params) (string, bool) {
	id := p.ByName("id")
	// Ids are 1 to 128 of the characters names may have, so that one check
	// fits a function's id, its name and an invocation's id.
	if function.CheckID(id) != nil {
		s.writeError(w, r, badRequest{fmt.Sprintf("%.40q is not an id or name: use 1 to %d of A-Z a-z 0-9 _ . -", id, function.MaxIDLen)})
		return "", false
	}
	return id, true
}

// registerBody is what POST /functions takes: the settings, and the
// server-set fields a client that sends a whole function object (the
// seed's client does) sends too, empty or zero. timeout_sec is the seed's
// name of timeout.
type registerBody struct {
	function.Spec
	// Runtime and ZipFile register a zip package (base64 in JSON), whose
	// image the server builds.
	Runtime    string    `json:"runtime"`
	ZipFile    []byte    `json:"zip_file"`
	ID         string    `json:"id"`
	TimeoutSec int       `json:"timeout_sec"`
	Version    int       `json:"version"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// spec checks the server-set fields and returns the settings.
func (b registerBody) spec() (function.Spec, error) {
	switch {
	case b.ID != "":
		return b.Spec, badField("id", "id is the server's to set: leave it out or empty")
	case b.Version != 0:
		return b.Spec, badField("version", "version is the server's to set: leave it out or 0")
	case !b.CreatedAt.IsZero() || !b.UpdatedAt.IsZero():
		return b.Spec, badRequest{"created_at and updated_at are the server's to set: leave them out or zero"}
	case b.Package != nil:
		return b.Spec, badField("package", "package is the server's to set: send the archive as zip_file, with its runtime and handler")
	case len(b.ZipFile) > 0 && b.Image != "":
		return b.Spec, badField("image", "a function is either an image or a zip package (zip_file), not both")
	case b.Runtime != "" && len(b.ZipFile) == 0:
		return b.Spec, badField("zip_file", "runtime is a setting of zip packages: send the archive as zip_file (base64)")
	case b.TimeoutSec != 0 && b.Timeout != 0 && b.TimeoutSec != b.Timeout:
		return b.Spec, badRequest{"timeout and timeout_sec are the same setting and differ: give one"}
	}
	if b.Timeout == 0 {
		b.Timeout = b.TimeoutSec
	}
	return b.Spec, nil
}

// shownFunction is a function as the API shows it: timeout_sec beside
// timeout, for the seed's clients.
type shownFunction struct {
	projections.Function
	TimeoutSec int `json:"timeout_sec,omitempty"`
}

func (s *Server) createFunction(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var body registerBody
	if err := s.decode(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	spec, err := body.spec()
	if err == nil && len(body.ZipFile) > 0 {
		spec, err = s.opts.Functions.BuildPackage(r.Context(), spec, body.Runtime, body.ZipFile)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := s.opts.Functions.Register(r.Context(), spec)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/functions/"+f.ID)
	writeJSON(w, http.StatusCreated, shown(f))
}

func (s *Server) listFunctions(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	fns, err := s.opts.Views.Functions()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]shownFunction, len(fns))
	for i, f := range fns {
		out[i] = shown(f)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getFunction(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	f, err := s.opts.Views.Function(ref)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, shown(f))
}

func (s *Server) updateFunction(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	var patch function.Patch
	if err := s.decode(w, r, &patch, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := s.opts.Functions.Update(r.Context(), ref, patch)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, shown(f))
}

// updateCode takes a zip package's new code: {"zip_file": base64}.
func (s *Server) updateCode(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	var body struct {
		ZipFile []byte `json:"zip_file"`
	}
	if err := s.decode(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(body.ZipFile) == 0 {
		s.writeError(w, r, badField("zip_file", "send the archive as zip_file (base64); an image function changes its image with PUT /functions/{id}"))
		return
	}
	f, err := s.opts.Functions.UpdatePackage(r.Context(), ref, body.ZipFile)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, shown(f))
}

func (s *Server) deleteFunction(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	if err := s.opts.Functions.Delete(r.Context(), ref); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// invokeBody is the body of POST /invoke/{id} and of its async form;
// every field is optional.
type invokeBody struct {
	Event       rawJSON `json:"event"`
	Timeout     int     `json:"timeout"`
	CallbackURL string  `json:"callback_url"`
	// CloudEvent is the event as a structured CloudEvent, in place of
	// Event.
	CloudEvent rawJSON `json:"cloud_event"`
}

func (s *Server) decodeInvoke(w http.ResponseWriter, r *http.Request) (function.Request, error) {
	trace := traceOf(r)
	if req, ok, err := s.cloudEventRequest(w, r); ok || err != nil {
		req.TraceID = trace
		return req, err
	}
	var body invokeBody
	if err := s.decode(w, r, &body, true); err != nil {
		if f := fieldOf(err); f != "" && strings.Contains(err.Error(), "unknown field") {
			err = badField(f, err.Error()+`: the body is {"event": <the function's event>, "timeout": <seconds>}`)
		}
		return function.Request{}, err
	}
	req := function.Request{Event: json.RawMessage(body.Event), Timeout: body.Timeout, CallbackURL: body.CallbackURL, TraceID: trace}
	if body.CloudEvent != nil {
		if body.Event != nil {
			return req, badRequest{"give the event or the cloud_event, not both"}
		}
		attrs, err := cloudEventAttrs(body.CloudEvent)
		if err != nil {
			return req, err
		}
		req.Event, req.CloudEvent = json.RawMessage(body.CloudEvent), &attrs
	}
	return req, nil
}

// accepted is the answer to an async invocation.
type accepted struct {
	InvocationID string    `json:"invocation_id"`
	Status       string    `json:"status"`
	TraceID      string    `json:"trace_id,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
}

func (s *Server) invokeAsync(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	inv, ok := s.call(w, r, p, s.opts.Invoker.Enqueue)
	if !ok {
		return
	}
	w.Header().Set("Location", "/invocations/"+inv.InvocationID)
	w.Header().Set("X-Trace-Id", inv.TraceID)
	writeJSON(w, http.StatusAccepted, accepted{InvocationID: inv.InvocationID, Status: inv.Status, TraceID: inv.TraceID, CreatedAt: inv.CreatedAt})
}

// call decodes an invocation request for the function in the path and
// hands it to the invoker; on an error it has answered already.
func (s *Server) call(w http.ResponseWriter, r *http.Request, p httprouter.Params,
	do func(context.Context, string, function.Request) (projections.Invocation, error)) (projections.Invocation, bool) {
	ref, qualifier, err := splitQualifier(r, p)
	if err != nil {
		s.writeError(w, r, err)
		return projections.Invocation{}, false
	}
	if _, ok := s.ref(w, r, httprouter.Params{{Key: "id", Value: ref}}); !ok {
		return projections.Invocation{}, false
	}
	req, err := s.decodeInvoke(w, r)
	req.Qualifier = qualifier
	if err == nil {
		var inv projections.Invocation
		if inv, err = do(r.Context(), ref, req); err == nil {
			return inv, true
		}
	}
	s.writeError(w, r, err)
	return projections.Invocation{}, false
}

func (s *Server) invoke(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	inv, ok := s.call(w, r, p, s.opts.Invoker.Invoke)
	if !ok {
		return
	}
	status := http.StatusOK
	switch {
	case inv.Status == projections.StatusFailed && inv.ErrorType == function.ErrorTimeout:
		status = http.StatusGatewayTimeout
	case inv.Status == projections.StatusFailed:
		status = http.StatusBadGateway
	}
	w.Header().Set("X-Trace-Id", inv.TraceID)
	writeJSON(w, status, inv)
}

func (s *Server) getInvocation(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	ref, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	inv, err := s.opts.Views.Invocation(ref)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, inv)
}

// invocationPage is the answer of GET /invocations.
type invocationPage struct {
	Invocations []projections.Invocation `json:"invocations"`
	// NextCursor, passed as ?cursor=, fetches the next page; empty on the
	// last.
	NextCursor string `json:"next_cursor,omitempty"`
}

func (s *Server) listInvocations(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	q := r.URL.Query()
	query := projections.InvocationQuery{Cursor: q.Get("cursor")}
	if fn := q.Get("function"); fn != "" {
		// A live function by id or name; otherwise take it as the id of a
		// deleted one, whose invocations stay listed.
		query.FunctionID = fn
		if f, err := s.opts.Views.Function(fn); err == nil {
			query.FunctionID = f.ID
		}
	}
	switch st := q.Get("status"); st {
	case "", projections.StatusPending, projections.StatusRunning, projections.StatusCompleted, projections.StatusFailed:
		query.Status = st
	default:
		s.writeError(w, r, badRequest{fmt.Sprintf("status must be PENDING, RUNNING, COMPLETED or FAILED, not %q", st)})
		return
	}
	if t := q.Get("trace_id"); t != "" {
		if function.CheckTraceID(t) != nil {
			s.writeError(w, r, badRequest{"trace_id must be 1 to 128 visible ASCII characters"})
			return
		}
		query.TraceID = t
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > projections.MaxLimit {
			s.writeError(w, r, badRequest{fmt.Sprintf("limit must be a number from 1 to %d", projections.MaxLimit)})
			return
		}
		query.Limit = n
	}
	for _, b := range []struct {
		name string
		to   *time.Time
	}{{"before", &query.Before}, {"after", &query.After}} {
		v := q.Get(b.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			s.writeError(w, r, badRequest{fmt.Sprintf("%s must be a time in RFC 3339 form (2026-11-27T20:00:00Z), not %.40q", b.name, v)})
			return
		}
		*b.to = t
	}
	page, next, err := s.opts.Views.Invocations(query)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, invocationPage{Invocations: page, NextCursor: next})
}

func (s *Server) loadImage(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	// Multipart framing adds a little to the archive itself.
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxImageBytes+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		s.writeError(w, r, badRequest{"send the image as multipart/form-data, field \"image\": the tar from docker save"})
		return
	}
	var spool *os.File
	for spool == nil {
		part, err := mr.NextPart()
		if err == io.EOF {
			s.writeError(w, r, badRequest{"no multipart field named \"image\""})
			return
		}
		if err != nil {
			s.writeError(w, r, wrapBody("the upload", err))
			return
		}
		if part.FormName() != "image" {
			continue
		}
		// Spool to disk: the engine may read slowly, and an archive can be
		// far larger than what we want in memory.
		// Made again if something swept it away since the server started.
		if s.opts.SpoolDir != "" {
			if err := os.MkdirAll(s.opts.SpoolDir, 0o700); err != nil {
				s.writeError(w, r, spoolError(err))
				return
			}
		}
		if spool, err = os.CreateTemp(s.opts.SpoolDir, "minilambda-image-*.tar"); err != nil {
			s.writeError(w, r, spoolError(err))
			return
		}
		defer os.Remove(spool.Name())
		defer spool.Close()
		sw := &spoolWriter{f: spool}
		n, err := io.Copy(sw, io.LimitReader(part, s.opts.MaxImageBytes+1))
		if sw.err != nil {
			s.writeError(w, r, spoolError(sw.err))
			return
		}
		if err != nil {
			s.writeError(w, r, wrapBody("the upload", err))
			return
		}
		if n > s.opts.MaxImageBytes {
			s.writeError(w, r, &http.MaxBytesError{Limit: s.opts.MaxImageBytes})
			return
		}
		if n == 0 {
			s.writeError(w, r, badRequest{"the \"image\" field is empty"})
			return
		}
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := checkImageTar(spool); err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.opts.Images.LoadImage(r.Context(), spool)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		Loaded   []string                  `json:"loaded"`
		Replaced []projections.ReplacedTag `json:"replaced"`
	}{res.Loaded, append([]projections.ReplacedTag{}, res.Replaced...)})
}

// wrapBody keeps a body over the bound, or one that came too slowly,
// recognisable, and calls any other error reading what (the request body,
// the upload) the client's.
func wrapBody(what string, err error) error {
	if _, ok := err.(*http.MaxBytesError); ok || errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return badRequest{fmt.Sprintf("reading %s: %v", what, err)}
}

// spoolWriter keeps the error of writing the spool file apart from those
// of reading the upload: the first is the server's, the second the
// client's.
type spoolWriter struct {
	f   *os.File
	err error
}

func (w *spoolWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// spoolError is the server's failure to store an upload: 507 when its disk
// is full, 503 otherwise, and the details (paths among them) only in the
// server's log.
func spoolError(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return internalError{err: err, status: http.StatusInsufficientStorage, msg: "the server has no room to store the upload; try again later"}
	}
	return internalError{err: err, status: http.StatusServiceUnavailable, msg: "the server cannot store the upload right now; try again later"}
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	tags, err := s.opts.Images.ListImages(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tags)
}

// healthBody is the answer of /healthz: the engine's state, whether the
// event log takes writes, and the log's head, which an operator can keep
// outside the file to check later that the log was not rewritten.
type healthBody struct {
	Status   string `json:"status"`
	Docker   string `json:"docker"`
	EventLog string `json:"event_log"`
	Error    string `json:"error,omitempty"`
	EventSeq uint64 `json:"event_log_seq"`
	HeadHash string `json:"event_log_head"`
}

func (s *Server) health(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	seq, head := s.opts.Status.Head()
	body := healthBody{Status: "ok", Docker: "ok", EventLog: "ok", EventSeq: seq, HeadHash: head.String()}
	var problems []string
	if err := s.opts.Status.Health(ctx); err != nil {
		body.Docker = "unreachable"
		problems = append(problems, fmt.Sprintf("the Docker engine does not answer: %v", err))
	}
	// The cause is in the server's log already, from the refused commit.
	if s.opts.Status.LogHealth() != nil {
		body.EventLog = "unwritable"
		problems = append(problems, "the event log cannot be written (is its disk full?)")
	}
	status := http.StatusOK
	if len(problems) > 0 {
		status, body.Status, body.Error = http.StatusServiceUnavailable, "unavailable", strings.Join(problems, "; ")
	}
	writeJSON(w, status, body)
}
