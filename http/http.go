// Package http is Mini Lambda's HTTP surface, transport only: it decodes
// and checks requests, hands them to the runner or the views through small
// interfaces (Functions, Invoker, Images, Status, Views, Versions,
// Schedules), and encodes answers and errors, mapping errors to status
// codes in one table. It holds no state and never touches an engine.
// Import it as lambdahttp, since it shadows net/http.
//
// It speaks three dialects, each in files of its own with its own route
// group, whose auth wraps every handler where the routes are registered
// (routes.go):
//
//   - the native REST API (api*.go): functions, invocations, images,
//     versions and aliases, schedules, the event stream and timelines, the
//     audit; the bearer token;
//   - the Lambda 2015-03-31 API (lambda*.go), for the AWS CLI and SDKs;
//     SigV4;
//   - HTTP triggers as function URLs (hooks.go); each trigger's own rule.
//
// Probes and the console's files (console.go) are open. Shared by all:
// the server and what a credential buys (http.go), the error table and
// one writer per wire format (errors.go), what a body may cost (body.go),
// and JSON's checks (check.go).
package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/internal/jsonmembers"
	"github.com/minilambda/minilambda/projections"
	"github.com/prometheus/client_golang/prometheus"
)

// The handlers depend on these small interfaces, each a part of what the
// runner and the views do, so that tests can fake them.

// Functions registers, changes and deletes functions.
type Functions interface {
	Register(ctx context.Context, spec function.Spec) (projections.Function, error)
	Update(ctx context.Context, ref string, patch function.Patch) (projections.Function, error)
	Delete(ctx context.Context, ref string) error
	// BuildPackage builds the zip archive data on runtime into the image
	// of a function with spec's settings, and returns them with the image
	// and the package set, to register; nothing is built when either is
	// refused.
	BuildPackage(ctx context.Context, spec function.Spec, runtime string, data []byte) (function.Spec, error)
	// UpdatePackage makes the zip archive data the new code of function
	// ref, a zip package.
	UpdatePackage(ctx context.Context, ref string, data []byte) (projections.Function, error)
	// Tag sets and removes tags of function ref.
	Tag(ctx context.Context, ref string, set map[string]string, remove []string) (projections.Function, error)
}

// Invoker runs invocations now (Invoke) or through the queue (Enqueue).
type Invoker interface {
	Invoke(ctx context.Context, ref string, req function.Request) (projections.Invocation, error)
	Enqueue(ctx context.Context, ref string, req function.Request) (projections.Invocation, error)
}

// Images loads images into the engine and lists them.
type Images interface {
	LoadImage(ctx context.Context, r io.Reader) (projections.ImageLoaded, error)
	ListImages(ctx context.Context) ([]string, error)
}

// Status says whether the engine answers and the log takes writes, and
// where the log's head is.
type Status interface {
	Health(ctx context.Context) error
	LogHealth() error
	Head() (uint64, eventlog.Hash)
}

// Budget is the server's memory budget: a request's body counts against
// it while the request is handled (for a sync invocation, until it ends),
// and each open event stream its queue and read chunk.
type Budget interface {
	Reserve(n int64) error
	Release(n int64)
}

// Views reads functions and invocations.
type Views interface {
	Function(ref string) (projections.Function, error)
	Functions() ([]projections.Function, error)
	Invocation(id string) (projections.Invocation, error)
	Invocations(q projections.InvocationQuery) ([]projections.Invocation, string, error)
	// InvocationSpan is where an invocation's events lie in the log: from
	// first, its queued event, to last, its latest so far.
	InvocationSpan(id string) (first, last uint64, err error)
}

var _ Views = (*projections.Views)(nil)

// Options configure New.
type Options struct {
	Functions Functions
	Invoker   Invoker
	Images    Images
	Status    Status
	Views     Views
	// Versions, when set, serves published versions and aliases, and the
	// Lambda API.
	Versions Versions
	// Schedules, when set, serves functions' schedule triggers.
	Schedules Schedules
	// Events, when set, serves the log as a stream on /events, and each
	// invocation's timeline.
	Events Events
	// Audit, when set, serves the log's head and a verification of its
	// hash chain on /audit.
	Audit Audit
	// AWSAccessKeyID and AWSSecretAccessKey are the key pair that Lambda
	// API requests must be signed with (SigV4) when Token is set; Region
	// goes into ARNs.
	AWSAccessKeyID     string
	AWSSecretAccessKey string
	Region             string
	// MaxInFlight is the most invocations the server runs at once, all
	// functions together: the Lambda API's account concurrency.
	MaxInFlight int
	// Budget, when set, bounds the request bodies and event streams held
	// at once.
	Budget Budget
	// StrangerBytes bounds the part of the budget held by the bodies of
	// requests without the token whose handlers check other credentials
	// (a SigV4 or HMAC signature over the body, or none for a hook open to
	// anyone): 4 × MaxBodyBytes when zero.
	StrangerBytes int64
	// MaxSubscribers bounds the event streams served at once;
	// DefaultMaxSubscribers when zero.
	MaxSubscribers int
	Logger         *slog.Logger
	Registry       *prometheus.Registry // served on /metrics
	// MaxBodyBytes bounds JSON request bodies; 6 MiB (Lambda's payload
	// limit) when zero.
	MaxBodyBytes int64
	// MaxImageBytes bounds an image upload; 2 GiB when zero.
	MaxImageBytes int64
	// MinBodyRate and BodyWindow bound how slowly a request body may come:
	// at least MinBodyRate bytes a second, counted over each BodyWindow
	// (64 KiB/s over 10 s when zero), or the request gets 408 and its
	// connection is closed. A slow client cannot hold a connection.
	MinBodyRate int64
	BodyWindow  time.Duration
	// SpoolDir holds uploads while the engine loads them; the system's
	// temporary directory when empty.
	SpoolDir string
	// Token, when set, must come with every request of the native API as
	// "Authorization: Bearer <token>" (and with /metrics unless
	// OpenMetrics); the Lambda API's are signed with the AWS key pair
	// instead, each hook has its trigger's rule, and /healthz, /health and
	// the console's files are open (routes.go).
	Token       string
	OpenMetrics bool
	// Profiling serves Go's runtime profiles under /debug/pprof/, with the
	// native API's token, for operators who need to see where the server's
	// time goes under load.
	Profiling bool
}

// Server is the API's http.Handler.
type Server struct {
	router *mux
	log    *slog.Logger
	opts   Options
	// streamsEnd closes when the server shuts down, ending event streams.
	streamsEnd chan struct{}
	// strangers is what bodies not yet trusted hold of the budget.
	strangers atomic.Int64
	// subscribers counts open event streams.
	subscribers atomic.Int64
	endOnce     sync.Once
	// verifying lets one audit verification run at a time: each reads the
	// whole log.
	verifying sync.Mutex
}

// New returns the API handler.
func New(opts Options) *Server {
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = 6 << 20
	}
	if opts.MaxImageBytes == 0 {
		opts.MaxImageBytes = 2 << 30
	}
	if opts.MaxSubscribers == 0 {
		opts.MaxSubscribers = DefaultMaxSubscribers
	}
	if opts.StrangerBytes == 0 {
		opts.StrangerBytes = 4 * opts.MaxBodyBytes
	}
	if opts.MinBodyRate == 0 {
		opts.MinBodyRate = 64 << 10
	}
	if opts.BodyWindow == 0 {
		opts.BodyWindow = 10 * time.Second
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: logger.With("subsystem", "http"), opts: opts, streamsEnd: make(chan struct{})}
	s.router = s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	conn, _ := r.Context().Value(connKey{}).(trustedConn)
	if conn != nil {
		conn.Handling(1)
		defer conn.Handling(-1)
	}
	trusted := s.opts.Token == "" || s.bearerOK(r)
	if trusted && conn != nil {
		conn.Trust()
	}
	rec.stranger = !trusted
	if !trusted && r.Body == http.NoBody {
		s.router.ServeHTTP(rec, r)
	} else if !trusted {
		// A request without the token: its route's auth refuses it, or
		// checks other credentials (a signature over the body, a hook's
		// own rule), or needs none. Its body counts as it arrives, in the
		// strangers' share of the budget, until the handler trusts it.
		m := &bodyMeter{s: s, stranger: true}
		defer m.release()
		r = r.WithContext(context.WithValue(r.Context(), meterKey{}, m))
		s.paceBody(w, r)
		s.router.ServeHTTP(rec, r)
	} else if release, err := s.reserveBody(r); err != nil {
		// Read the body past, into nothing (it has the token, when one is
		// set): a client sends it whole before it reads the answer, and
		// one cut off mid-body sees a reset connection instead of the 429.
		s.paceBody(w, r)
		io.Copy(io.Discard, http.MaxBytesReader(rec, r.Body, s.opts.MaxBodyBytes))
		rec.Header().Set("Retry-After", "1")
		s.writeError(rec, r, err)
	} else {
		defer release()
		s.paceBody(w, r)
		s.router.ServeHTTP(rec, r)
	}
	if rec.cut {
		// Refused for its credentials, or a stranger's request refused for
		// any reason: the answer goes out, then the connection closes
		// without reading what is left of the body (net/http would read up
		// to 256 KiB of it, at the sender's pace, to reuse the connection).
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
	s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start))
}

// refused says whether status refuses a request for its credentials.
func refused(status int) bool {
	return status == http.StatusUnauthorized || status == http.StatusForbidden
}

// trustedConn is what a connection of internal/connlimit offers: it keeps
// a share of the server's connections for clients with credentials.
type trustedConn interface {
	Trust()
	Handling(n int)
}

type connKey struct{}

// ConnContext is http.Server's ConnContext for the API: it lets a request
// that shows the server's credentials mark its connection as trusted.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// trust marks r, whose handler has checked the server's credentials on
// it (its SigV4 signature), as a client's that holds them: its body
// leaves the strangers' share of the budget, and its connection is
// trusted.
func (s *Server) trust(r *http.Request) {
	s.trustBody(r)
	if conn, ok := r.Context().Value(connKey{}).(trustedConn); ok {
		conn.Trust()
	}
}

// trustBody moves r's body out of the strangers' share, for a request
// whose handler checked credentials that are not the server's (a hook's
// HMAC secret, which its senders hold): its connection stays a
// stranger's.
func (s *Server) trustBody(r *http.Request) {
	if m, ok := r.Context().Value(meterKey{}).(*bodyMeter); ok {
		m.trust()
	}
}

// traceOf is the trace an API request carries: its W3C traceparent, else
// its X-Request-ID, else a new one.
func traceOf(r *http.Request) string {
	return function.TraceFromHeaders(r.Header.Get("Traceparent"), r.Header.Get("X-Request-Id"))
}

type statusRecorder struct {
	http.ResponseWriter
	status   int
	stranger bool // the request came without the server's token
	cut      bool // its connection closes, the rest of its body unread
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	if refused(code) || r.stranger && code >= http.StatusBadRequest {
		r.cut = true
		r.Header().Set("Connection", "close")
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// decode reads one JSON value from the body into v, refusing unknown
// fields, trailing data and bodies over the bound. An empty body is
// allowed when emptyOK. A large body is held once: read into a buffer of
// its exact size, and a json.RawMessage-like field (rawJSON) keeps a slice
// of that buffer instead of a copy.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	data, err := s.bodyOf(w, r)
	if err != nil {
		return wrapBody("the request body", err)
	}
	if len(data) == 0 && emptyOK {
		return nil
	}
	if !json.Valid(data) {
		return badRequest{"request body is not valid JSON"}
	}
	if err := checkJSON(data); err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			path := memberPath(typeErr.Field)
			return badField(path, fmt.Sprintf("field %q must be %s, not %s", path, jsonType(typeErr.Type), typeErr.Value))
		}
		return badRequest{fmt.Sprintf("request body: %v", err)}
	}
	return checkFields(data, v)
}

// bodyOf reads r's body, bounded by MaxBodyBytes: the one its handler
// has read and checked already (heldBody), or one counted against the
// strangers' share as it arrives (bodyMeter), or one read whole into a
// buffer of the length it declares.
func (s *Server) bodyOf(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if held, ok := r.Body.(*heldBody); ok {
		return held.data, nil
	}
	limit := s.bodyLimit(r)
	body := http.MaxBytesReader(w, r.Body, limit)
	if m, ok := r.Context().Value(meterKey{}).(*bodyMeter); ok {
		return m.read(body, r.ContentLength, limit)
	}
	return readBody(body, r.ContentLength, limit)
}

// bodyLimit is the most r's body may be: MaxBodyBytes, or, for the
// requests that may carry a zip package (a function's registration, a new
// code), function.MaxZipRequestBytes, as Lambda's.
func (s *Server) bodyLimit(r *http.Request) int64 {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost && (p == "/functions" || p == lambdaPrefix+"/functions"),
		r.Method == http.MethodPut && strings.HasSuffix(p, "/code") &&
			(strings.HasPrefix(p, "/functions/") || strings.HasPrefix(p, lambdaPrefix+"/functions/")):
		return max(s.opts.MaxBodyBytes, function.MaxZipRequestBytes)
	}
	return s.opts.MaxBodyBytes
}

// readBody reads a body of the length its request declares into a buffer
// of that size, or, when the length is unknown, as it comes.
func readBody(r io.Reader, length, limit int64) ([]byte, error) {
	if length < 0 || length > limit {
		return io.ReadAll(r)
	}
	data := make([]byte, length)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, err
	}
	return data, nil
}

// rawJSON is a JSON value kept as it is, as a slice of the body it came in
// (json.Unmarshal hands UnmarshalJSON a slice of its input).
type rawJSON []byte

// UnmarshalJSON implements json.Unmarshaler.
func (r *rawJSON) UnmarshalJSON(b []byte) error {
	*r = b
	return nil
}

// skipJSON reads nothing of a value.
type skipJSON struct{}

// UnmarshalJSON implements json.Unmarshaler.
func (*skipJSON) UnmarshalJSON([]byte) error { return nil }

// checkFields refuses a member of the body's object that no field of v,
// a pointer to a struct, takes; names match without regard to case, as
// encoding/json matches them.
func checkFields(data []byte, v any) error {
	var members map[string]skipJSON
	if json.Unmarshal(data, &members) != nil {
		return nil // not an object: Unmarshal into v said what was wrong
	}
	names := jsonmembers.Of(reflect.TypeOf(v).Elem())
	for name := range members {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, name) }) {
			return badField(name, fmt.Sprintf("request body: unknown field %q", name))
		}
	}
	return nil
}

// memberPath is a decoding error's field path as the client wrote it:
// without the Go names of embedded structs ("Spec.mode" is "mode"), which
// are capitalized where the API's members are not.
func memberPath(field string) string {
	parts := strings.Split(field, ".")
	kept := parts[:0]
	for _, p := range parts {
		if p != "" && !('A' <= p[0] && p[0] <= 'Z') {
			kept = append(kept, p)
		}
	}
	if len(kept) == 0 {
		return field
	}
	return strings.Join(kept, ".")
}

// jsonType names what a field takes in the words of JSON's Go decoding: a
// named type of the domain (function.Mode) is the kind it is made of.
func jsonType(t reflect.Type) string {
	if t.PkgPath() == "" {
		return t.String()
	}
	switch k := t.Kind(); k {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		return k.String()
	}
	return t.String()
}
