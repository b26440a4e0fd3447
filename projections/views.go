package projections

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/oklog/ulid/v2"
)

// Function is the read model of a registered function.
type Function struct {
	ID string `json:"id"`
	function.Spec
	Version      int       `json:"version"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	Imported     bool      `json:"imported,omitempty"`
	OriginalName string    `json:"original_name,omitempty"`
	Deleted      bool      `json:"deleted,omitempty"`
	// Tags are the function's tags (function.tagged), kept apart from its
	// settings: they change no version.
	Tags map[string]string `json:"tags,omitempty"`
	// Published is the published version these settings are, 0 for the
	// current ones ($LATEST); such a Function is never stored.
	Published int `json:"-"`
}

// VersionName is the published version these settings are ("3"), or
// $LATEST.
func (f Function) VersionName() string {
	if f.Published == 0 {
		return function.Latest
	}
	return strconv.Itoa(f.Published)
}

// Invocation is the read model of one invocation: the record the API shows.
type Invocation struct {
	InvocationID    string `json:"invocation_id"`
	FunctionID      string `json:"function_id"`
	FunctionName    string `json:"function_name"`
	FunctionVersion int    `json:"function_version"`
	// ExecutedVersion is the published version that ran, or $LATEST.
	ExecutedVersion string `json:"executed_version"`
	// Alias is the alias the caller named, when it did.
	Alias           string             `json:"alias,omitempty"`
	TraceID         string             `json:"trace_id,omitempty"`
	CloudEvent      *CloudEventAttrs   `json:"cloud_event,omitempty"`
	ScheduleID      string             `json:"schedule_id,omitempty"`
	ScheduledAt     *time.Time         `json:"scheduled_at,omitempty"`
	Async           bool               `json:"async"`
	Status          string             `json:"status"`
	Result          string             `json:"result"`
	Logs            string             `json:"logs"`
	ExitCode        *int               `json:"exit_code,omitempty"`
	Error           string             `json:"error,omitempty"`
	ErrorType       function.ErrorType `json:"error_type,omitempty"`
	Duration        int64              `json:"duration"` // milliseconds
	Timestamp       *time.Time         `json:"timestamp,omitempty"`
	CreatedAt       time.Time          `json:"created_at"`
	StartedAt       *time.Time         `json:"started_at,omitempty"`
	CompletedAt     *time.Time         `json:"completed_at,omitempty"`
	Attempts        int                `json:"attempts"`
	Truncated       bool               `json:"truncated,omitempty"`
	ResultTruncated bool               `json:"result_truncated,omitempty"`
	LogsTruncated   bool               `json:"logs_truncated,omitempty"`
	ContainerID     string             `json:"container_id,omitempty"`
	ImageDigest     string             `json:"image_digest,omitempty"`
	NextAttemptAt   *time.Time         `json:"next_attempt_at,omitempty"`
	// LambdaErrorType is a failed lambda invocation's errorType.
	LambdaErrorType string `json:"lambda_error_type,omitempty"`
	// InitDuration (ms) is on the invocation that waited for its
	// long-lived container to start.
	InitDuration int64 `json:"init_duration,omitempty"`
}

// ErrNotFound means no live function or no invocation has that id or name.
var ErrNotFound = errors.New("not found")

// ErrBadCursor means a paging cursor was not one this package handed out.
var ErrBadCursor = errors.New("invalid paging cursor")

// Viewer is what the read API needs of the log.
type Viewer interface {
	View(fn func(eventlog.ViewReader) error) error
}

// Views answers queries from the stored views.
type Views struct {
	v Viewer

	// Every invocation looks its function up, and decoding the stored JSON
	// cost more than the rest of a hot invocation's bookkeeping. The cache
	// holds decoded functions by the id or name asked for, with the bytes
	// they were decoded from:
	// a lookup still reads the view, so it never answers with a version
	// the view no longer has.
	mu    sync.Mutex
	cache map[string]cachedFunction
}

type cachedFunction struct {
	stored []byte
	f      Function
}

// maxCachedFunctions bounds the cache; past it, the cache starts over.
const maxCachedFunctions = 4096

// NewViews returns the read API over log.
func NewViews(log Viewer) *Views { return &Views{v: log, cache: map[string]cachedFunction{}} }

// storedFunction returns the stored bytes of the live function whose id or
// name is ref.
func storedFunction(r eventlog.ViewReader, ref string) ([]byte, error) {
	v := r.Get(viewFunctions, []byte(ref))
	if v == nil {
		if id := r.Get(viewFunctionNames, []byte(ref)); id != nil {
			v = r.Get(viewFunctions, id)
		}
	}
	if v == nil {
		return nil, fmt.Errorf("function %q: %w", ref, ErrNotFound)
	}
	return v, nil
}

// FunctionByRef returns the live function whose id or name is ref.
func FunctionByRef(r eventlog.ViewReader, ref string) (Function, error) {
	v, err := storedFunction(r, ref)
	if err != nil {
		return Function{}, err
	}
	var f Function
	err = json.Unmarshal(v, &f)
	return f, err
}

// FunctionLive returns ErrNotFound unless a live function has the id: the
// check an invocation's first append makes, without decoding the
// function.
func FunctionLive(r eventlog.ViewReader, id string) error {
	if r.Get(viewFunctions, []byte(id)) == nil {
		return fmt.Errorf("function %q: %w", id, ErrNotFound)
	}
	return nil
}

// NameTaken reports whether a live function has the name.
func NameTaken(r eventlog.ViewReader, name string) bool {
	return r.Get(viewFunctionNames, []byte(name)) != nil
}

// KnownFunction reports whether a function with the id was ever
// registered, including deleted ones.
func KnownFunction(r eventlog.ViewReader, id string) bool {
	found := false
	_ = r.Scan(viewFunctionVersions, indexKey(id, ""), nil, false, func(k, v []byte) bool {
		found = true
		return false
	})
	return found
}

// Function returns the live function whose id or name is ref.
func (s *Views) Function(ref string) (f Function, err error) {
	err = s.v.View(func(r eventlog.ViewReader) error {
		v, err := storedFunction(r, ref)
		if err != nil {
			return err
		}
		s.mu.Lock()
		c, ok := s.cache[ref]
		s.mu.Unlock()
		if ok && bytes.Equal(c.stored, v) {
			f = c.f
			f.Env = maps.Clone(f.Env) // callers may change theirs
			return nil
		}
		if err := json.Unmarshal(v, &f); err != nil {
			return err
		}
		c = cachedFunction{stored: bytes.Clone(v), f: f}
		c.f.Env = maps.Clone(f.Env)
		s.mu.Lock()
		if len(s.cache) >= maxCachedFunctions {
			clear(s.cache)
		}
		s.cache[ref] = c
		s.mu.Unlock()
		return nil
	})
	return f, err
}

// Functions lists the live functions, oldest first.
func (s *Views) Functions() ([]Function, error) {
	out := []Function{}
	err := s.v.View(func(r eventlog.ViewReader) error {
		return r.Scan(viewFunctions, nil, nil, false, func(k, v []byte) bool {
			var f Function
			if err := json.Unmarshal(v, &f); err == nil {
				out = append(out, f)
			}
			return true
		})
	})
	slices.SortStableFunc(out, func(a, b Function) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, err
}

// FunctionVersions returns every recorded version of a function, deleted
// or not, oldest first.
func (s *Views) FunctionVersions(id string) ([]Function, error) {
	var out []Function
	err := s.v.View(func(r eventlog.ViewReader) (err error) {
		out, err = scanJSON[Function](r, viewFunctionVersions, indexKey(id, ""))
		return err
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("function %q: %w", id, ErrNotFound)
	}
	return out, err
}

// Invocation returns one invocation record.
func (s *Views) Invocation(id string) (inv Invocation, err error) {
	err = s.v.View(func(r eventlog.ViewReader) error {
		inv, err = readInvocation(r, []byte(id), nil)
		return err
	})
	return inv, err
}

// InvocationSpan says where an invocation's events lie in the log: from
// first, its queued event, to last, its latest event so far.
func (s *Views) InvocationSpan(id string) (first, last uint64, err error) {
	err = s.v.View(func(r eventlog.ViewReader) error {
		rec, err := storedRecord(r, id, nil)
		if err != nil {
			return err
		}
		first, last = rec.QueuedSeq, rec.LastSeq
		return nil
	})
	return first, last, err
}

// Queued returns what an invocation was queued with: the event, the
// timeout and the callback, for running it again after a restart. The
// event is read from the log once, not copied again.
func (s *Views) Queued(id string) (q InvocationQueued, err error) {
	err = s.v.View(func(r eventlog.ViewReader) error {
		rec, err := storedRecord(r, id, nil)
		if err != nil {
			return err
		}
		e, err := r.Event(rec.QueuedSeq)
		if err != nil {
			return fmt.Errorf("invocation %s: %w", id, err)
		}
		q, err = DecodeQueued(&e)
		return err
	})
	return q, err
}

// storedRecord decodes the record of invocation id: v, when the caller
// has its stored bytes in hand already, or what the view holds.
func storedRecord(r eventlog.ViewReader, id string, v []byte) (storedInvocation, error) {
	if v == nil {
		v = r.Get(viewInvocations, recordKey(id))
	}
	var rec storedInvocation
	if v == nil {
		return rec, fmt.Errorf("invocation %q: %w", id, ErrNotFound)
	}
	err := rec.unmarshal(id, v)
	return rec, err
}

// readInvocation reads a record, whose stored bytes v the caller may have
// in hand already, and the outputs from the event that ended it.
func readInvocation(r eventlog.ViewReader, id, v []byte) (Invocation, error) {
	rec, err := storedRecord(r, string(id), v)
	if err != nil {
		return Invocation{}, err
	}
	if rec.EndSeq != 0 {
		e, err := r.Event(rec.EndSeq)
		if err == nil {
			err = rec.outputs(&e)
		}
		if err != nil {
			return Invocation{}, fmt.Errorf("invocation %s: %w", id, err)
		}
	}
	return rec.Invocation, nil
}

// outputs fills in the outputs (Result, Logs, and a lambda invocation's
// error type and init duration) from e, the event that ended the record's
// last attempt: ended or retried.
func (r *storedInvocation) outputs(e *eventlog.Event) error {
	return scanInto(e, outputFields, r)
}

// Record returns the record of one invocation from its events as Append
// returned them, in log order from its queued event: the record the views
// hold once they commit, for an appender to answer with without reading it
// back.
func Record(events ...eventlog.Event) (Invocation, error) {
	if len(events) == 0 || events[0].Type != TypeInvocationQueued {
		return Invocation{}, fmt.Errorf("%w: an invocation's events start with %s", ErrInconsistent, TypeInvocationQueued)
	}
	id := events[0].InvocationID
	b := &batch{invs: map[string]*pendingInvocation{}}
	for i := range events {
		e := &events[i]
		if e.InvocationID != id || !strings.HasPrefix(e.Type, "invocation.") {
			return Invocation{}, fmt.Errorf("%w: %s seq %d is not an event of invocation %s", ErrInconsistent, e.Type, e.Seq, id)
		}
		prepared, err := Projector{}.Prepare(e)
		if err == nil {
			err = b.ApplyPrepared(e, prepared)
		}
		if err != nil {
			return Invocation{}, err
		}
	}
	// Through the stored form, so that the answer is the record a reader
	// gets, down to the time zone and the derived fields.
	rec := &storedInvocation{}
	if err := rec.unmarshal(id, b.invs[id].rec.marshal()); err != nil {
		return Invocation{}, err
	}
	if rec.EndSeq != 0 {
		i := slices.IndexFunc(events, func(e eventlog.Event) bool { return e.Seq == rec.EndSeq })
		if i < 0 {
			return Invocation{}, fmt.Errorf("%w: invocation %s ended at seq %d, which is not among its events", ErrInconsistent, id, rec.EndSeq)
		}
		if err := rec.outputs(&events[i]); err != nil {
			return Invocation{}, fmt.Errorf("invocation %s: %w", id, err)
		}
	}
	return rec.Invocation, nil
}

// InvocationQuery filters and pages the invocation list.
type InvocationQuery struct {
	FunctionID string // exact function id; empty for all
	TraceID    string // exact trace id; empty for all
	Status     string // one of the four statuses; empty for all
	Limit      int    // 1..MaxLimit; DefaultLimit when 0
	Cursor     string // from a previous page's next cursor
	// Before and After bound when the server took an invocation's
	// request: before Before, at or after After, to the millisecond; zero
	// for no bound. That is the time in its id (a ULID, made then), so a
	// bound is a place in each index and a page costs the same wherever it
	// starts. CreatedAt, the queued event's time, is later by any wait
	// for a free slot.
	Before, After time.Time
}

// Paging bounds of InvocationQuery.Limit.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// Invocations lists invocations newest first. next is the cursor of the
// following page, empty on the last page.
func (s *Views) Invocations(q InvocationQuery) (page []Invocation, next string, err error) {
	if q.Limit <= 0 {
		q.Limit = DefaultLimit
	}
	q.Limit = min(q.Limit, MaxLimit)
	if q.Cursor != "" && !validCursor(q.Cursor) {
		return nil, "", ErrBadCursor
	}
	prefix := recordKey("")
	indexed := q.FunctionID != "" || q.Status != "" || q.TraceID != ""
	switch {
	case q.TraceID != "":
		prefix = traceKey(q.TraceID, "")
	case q.FunctionID != "":
		prefix = functionKey(q.FunctionID, "")
	case q.Status != "":
		prefix = statusKey(q.Status, "")
	}
	// The scan starts at the cursor or at Before, whichever is older: the
	// smallest id of Before's millisecond, which no invocation has, puts
	// it at the last one created before then.
	var start []byte
	from := q.Cursor
	if !q.Before.IsZero() {
		if b := timeKey(q.Before); from == "" || b < from {
			from = b
		}
	}
	if from != "" {
		start = append(append([]byte(nil), prefix...), from...)
	}
	var stop string
	if !q.After.IsZero() {
		stop = timeKey(q.After)
	}
	page = []Invocation{}
	err = s.v.View(func(r eventlog.ViewReader) error {
		var derr error
		err := r.Scan(viewInvocations, prefix, start, true, func(k, v []byte) bool {
			id := k[len(prefix):]
			if string(id) == q.Cursor {
				return true
			}
			if stop != "" && string(id) < stop {
				return false
			}
			if len(page) == q.Limit {
				next = page[len(page)-1].InvocationID
				return false
			}
			var inv Invocation
			if indexed {
				v = nil // an index entry; the record is elsewhere
			}
			if inv, derr = readInvocation(r, id, v); derr != nil {
				return false
			}
			if (q.Status == "" || inv.Status == q.Status) && (q.FunctionID == "" || inv.FunctionID == q.FunctionID) {
				page = append(page, inv)
			}
			return true
		})
		return errors.Join(err, derr)
	})
	return page, next, err
}

// timeKey is the smallest invocation id of t's millisecond.
func timeKey(t time.Time) string {
	var id ulid.ULID
	if t.Before(time.UnixMilli(0)) {
		return id.String()
	}
	if err := id.SetTime(ulid.Timestamp(t)); err != nil {
		id = ulid.MustParse("7ZZZZZZZZZZZZZZZZZZZZZZZZZ") // past the last time a ULID holds
	}
	return id.String()
}

// validCursor accepts invocation ids: ULIDs, 26 characters of Crockford's
// base32.
func validCursor(c string) bool {
	if len(c) != 26 {
		return false
	}
	for _, r := range c {
		if !('0' <= r && r <= '9' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}

// ErrorDocument is what Lambda answers for a failed invocation: a lambda
// function's own error document (its result, when the runtime reported
// an error of lambdaErrorType with a JSON object), or
// {"errorMessage", "errorType"} made from the failure's kind and message.
func ErrorDocument(lambdaErrorType, result string, kind function.ErrorType, msg string) []byte {
	if lambdaErrorType != "" && json.Valid([]byte(result)) && strings.HasPrefix(strings.TrimSpace(result), "{") {
		return []byte(result)
	}
	typ := lambdaErrorType
	switch {
	case typ != "":
	case kind == function.ErrorTimeout:
		typ = "Sandbox.Timedout"
	case kind == function.ErrorOutOfMemory:
		typ = "Runtime.OutOfMemory"
	default:
		typ = "Runtime.ExitError"
	}
	if msg == "" {
		msg = "the function failed"
	}
	b, _ := json.Marshal(map[string]string{"errorMessage": msg, "errorType": typ})
	return b
}
