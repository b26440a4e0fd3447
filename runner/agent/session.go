package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/runner/engine"
)

// MaxPayload is the most bytes a response or an error may have: Lambda's
// 6 MiB, with the 100 bytes of slack its Runtime API allows.
const MaxPayload = 6<<20 + 100

const apiBase = "/2018-06-01/runtime/"

// exitWait bounds the wait for an ended container's exit state.
const exitWait = 2 * time.Second

// session is the server side of one lambda container: its Runtime API, and
// the engine.Hot the runner gives invocations to.
type session struct {
	*link
	h     *Host
	f     Function
	arn   string
	srv   *rapiServer
	c     engine.Detached
	began time.Time // when the container was asked to start

	// The init's answers to flushes: unanswered counts the flushes sent
	// and not answered, under ctrlMu. flushing holds a token while a flush
	// is under way, one at a time.
	unanswered int
	flushing   chan struct{}
	flushes    chan flushed

	calls     chan *call    // to the runtime's waiting next
	dead      chan struct{} // closed when the session can take no more
	deadOnce  sync.Once
	closeOnce sync.Once

	mu           sync.Mutex
	cur          *call // given to the runtime and not answered
	asked        bool  // the runtime has asked for an event
	ready        time.Time
	initReported bool
	end          *ending // how the runtime ended, as it or the init said
}

// call is one invocation given to the session.
type call struct {
	id       string
	trace    string
	event    []byte
	deadline time.Time
	// onStart records the start, which the runtime's next calls just
	// before it gives the runtime the event, and sends its error to
	// started.
	onStart engine.OnStart
	started chan error
	done    chan answer // one answer, never blocking its sender
}

// answer is how the runtime answered a call.
type answer struct {
	payload []byte
	logs    []byte
	dropped int64
	fnErr   *engine.FunctionError
	at      time.Time
}

// ending is what is known of how the runtime ended.
type ending struct {
	fnErr   *engine.FunctionError // an init error, or an entrypoint that could not run
	logs    []byte
	dropped int64
	exited  bool
	code    int
	status  string // "exit status 2", "signal: killed"
}

func newSession(h *Host, f Function, l *link) *session {
	s := &session{
		link: l, h: h, f: f, arn: ARN(h.opts.Region, f.Name),
		calls: make(chan *call), dead: make(chan struct{}),
		flushing: make(chan struct{}, 1), flushes: make(chan flushed, 1),
	}
	l.conns = newConnQueue()
	l.frame = s.onFrame
	return s
}

// onFrame takes one of the init's frames.
func (s *session) onFrame(typ byte, payload []byte) {
	switch typ {
	case frameLogs:
		if len(payload) < 8 {
			return
		}
		// The init answers flushes in order: only the answer to the
		// latest one goes to the flush waiting for it. An answer to a
		// flush that gave up, or to none, is dropped, so that no logs
		// reach a later invocation.
		s.ctrlMu.Lock()
		if s.unanswered > 0 {
			s.unanswered--
			if s.unanswered == 0 {
				// Never full: each flush empties it before it asks.
				select {
				case s.flushes <- flushed{dropped: int64(binary.BigEndian.Uint64(payload)), logs: payload[8:]}:
				default:
				}
			}
		}
		s.ctrlMu.Unlock()
	case frameExit:
		s.exitReported(payload)
	}
}

func (s *session) ID() string          { return s.c.ID() }
func (s *session) ImageDigest() string { return s.c.ImageDigest() }

// Alive reports whether the session may still take an invocation.
func (s *session) Alive() bool {
	select {
	case <-s.dead:
		return false
	default:
		return true
	}
}

// Do gives the runtime one invocation and waits up to timeout for its
// answer; see engine.Hot. The timeout counts from the call, so that a
// runtime that never gets ready is cut too. The start is recorded when the
// runtime takes the event: a container whose runtime had ended before it
// asked again ran nothing (engine.ErrHotStale), while one whose runtime
// never got ready fails the invocation that waited for it.
func (s *session) Do(ctx context.Context, id string, event []byte, timeout time.Duration, onStart engine.OnStart) (engine.Result, error) {
	res := engine.Result{ContainerID: s.c.ID(), ImageDigest: s.c.ImageDigest(), StartedAt: time.Now()}
	c := &call{id: id, trace: engine.TraceID(ctx), event: event, deadline: res.StartedAt.Add(timeout), onStart: onStart,
		started: make(chan error, 1), done: make(chan answer, 1)}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case s.calls <- c:
	case <-s.dead:
		s.mu.Lock()
		asked := s.asked
		s.mu.Unlock()
		if asked {
			return res, fmt.Errorf("%w: its runtime had ended", engine.ErrHotStale)
		}
		if s.c != nil && s.reported() == nil {
			// Its init never connected: nothing of the function ran, as
			// when a cluster could not place the container.
			return res, fmt.Errorf("%w: it exited before its init connected%s", engine.ErrHotStale, why(s.c))
		}
		if err := onStart(s.c.ID(), s.c.ImageDigest()); err != nil {
			return res, err
		}
		return s.ended(ctx, res, c, false)
	case <-timer.C:
		if err := onStart(s.c.ID(), s.c.ImageDigest()); err != nil {
			return res, err
		}
		res.TimedOut = true
		finish(&res, time.Now())
		// A runtime that never asked for an event is still in its
		// start-up, whose logs go with the invocation that waited for it;
		// what one wrote after answering an earlier one belongs to none.
		s.mu.Lock()
		asked := s.asked
		s.mu.Unlock()
		if !asked {
			if f, err := s.lateFlush(ctx); err == nil {
				res.Stderr, res.StderrTruncated = f.logs, f.dropped > 0
			}
		}
		s.markDead()
		return res, fmt.Errorf("%w: its runtime did not ask for the event within %v", engine.ErrHotBroken, timeout)
	case <-ctx.Done():
		return res, fmt.Errorf("lambda: invocation abandoned before its runtime had it: %w", ctx.Err())
	}
	if err := <-c.started; err != nil {
		return res, err
	}
	s.mu.Lock()
	res.StartedAt = time.Now()
	if !s.initReported {
		s.initReported = true
		res.InitDuration = s.ready.Sub(s.began)
	}
	s.mu.Unlock()
	select {
	case a := <-c.done:
		return answered(res, a), nil
	case <-s.dead:
		select {
		case a := <-c.done:
			return answered(res, a), nil
		default:
		}
		return s.ended(ctx, res, c, true)
	case <-timer.C:
		res.TimedOut = true
		finish(&res, time.Now())
		// What the runtime wrote until now is this invocation's: the init
		// still answers, though the runtime does not.
		if f, err := s.lateFlush(ctx); err == nil {
			res.Stderr, res.StderrTruncated = f.logs, f.dropped > 0
		}
		s.markDead()
		return res, fmt.Errorf("%w: no answer within %v", engine.ErrHotBroken, timeout)
	case <-ctx.Done():
		s.markDead()
		finish(&res, time.Now())
		return res, fmt.Errorf("lambda: invocation abandoned: %w", ctx.Err())
	}
}

func finish(res *engine.Result, at time.Time) {
	res.CompletedAt = at
	res.Duration = at.Sub(res.StartedAt)
}

func answered(res engine.Result, a answer) engine.Result {
	res.Stdout, res.Stderr, res.StderrTruncated, res.FunctionError = a.payload, a.logs, a.dropped > 0, a.fnErr
	finish(&res, a.at)
	return res
}

// ended is the result of a call the session ended under: given says
// whether the runtime had it. It waits a little for the container's exit
// and for the init's last report, never past the call's deadline nor once
// ctx ends: a runtime that reported an init error and lives on is not
// waited for, and the caller closes its container.
func (s *session) ended(ctx context.Context, res engine.Result, c *call, given bool) (engine.Result, error) {
	finish(&res, time.Now())
	if lost := s.lost(); lost != "" {
		res.ExitCode = -1
		return res, fmt.Errorf("%w: %s", engine.ErrHotBroken, lost)
	}
	wait := time.NewTimer(min(exitWait, time.Until(c.deadline)))
	defer wait.Stop()
	// The init's report of the runtime's exit, with its last logs, may be
	// on its way still when the engine reports the container's exit.
	exited, reported := s.c.Exited(), s.reported()
	sawExit := false
	for exited != nil || reported != nil {
		select {
		case <-exited:
			exited, sawExit = nil, true
			res.ExitCode, res.OOMKilled = s.c.ExitState(ctx)
			reported = s.reported()
		case <-reported:
			reported = nil
		case <-wait.C:
			exited, reported = nil, nil
		case <-ctx.Done():
			return res, fmt.Errorf("lambda: invocation abandoned: %w", ctx.Err())
		}
	}
	s.mu.Lock()
	end, asked := s.end, s.asked
	s.mu.Unlock()
	status := "the container stopped"
	if end != nil {
		// What the runtime wrote before it ended is this call's when it
		// had the call, or when it never got as far as asking for one.
		if given || !asked {
			res.Stderr, res.StderrTruncated = end.logs, end.dropped > 0
		}
		if end.exited {
			res.ExitCode, status = end.code, end.status
		}
		res.FunctionError = end.fnErr
	}
	if end == nil && !sawExit && !time.Now().Before(c.deadline) {
		// Nothing came of the runtime's end before the deadline.
		res.TimedOut = true
		return res, fmt.Errorf("%w: its runtime ended and its container did not stop within the timeout", engine.ErrHotBroken)
	}
	if res.FunctionError == nil {
		res.FunctionError = &engine.FunctionError{Type: "Runtime.ExitError",
			Message: fmt.Sprintf("RequestId: %s Error: Runtime exited with error: %s", c.id, status)}
	}
	if res.ExitCode == 0 {
		// It ended without answering: a failure, whatever its code.
		res.ExitCode = -1
	}
	return res, fmt.Errorf("%w: %s: %s", engine.ErrHotBroken, res.FunctionError.Type, res.FunctionError.Message)
}

// markDead ends the session: no more calls are taken, and a call under way
// ends with what is known.
func (s *session) markDead() { s.deadOnce.Do(func() { close(s.dead) }) }

// watch ends the session when its container stops.
func (s *session) watch() {
	hungUp := s.ctrlDone
	for {
		select {
		case <-s.c.Exited():
			s.markDead()
			return
		case <-hungUp:
			// An init that hangs up reports its runtime's exit first; one
			// lost with its node has nothing more to say.
			if s.lost() != "" {
				s.markDead()
				return
			}
			hungUp = nil
		case <-s.dead:
			return
		}
	}
}

// Close kills and removes the container and its socket.
func (s *session) Close(ctx context.Context) {
	s.closeOnce.Do(func() {
		s.markDead()
		if s.c != nil {
			s.c.Close(ctx)
		}
		s.release()
		s.h.forget(s)
	})
}

// release closes the socket and every connection, and removes the
// socket's directory.
func (s *session) release() {
	s.link.release()
	s.srv.Close()
}

// serveRAPI is the container's Runtime API.
func (s *session) serveRAPI(w *rapiResponse, r *rapiRequest) {
	p := r.path
	switch {
	case string(p) == apiBase+"invocation/next":
		if r.method != http.MethodGet {
			methodNotAllowed(w, http.MethodGet)
			return
		}
		s.next(w, r)
	case bytes.HasPrefix(p, []byte(apiBase+"invocation/")):
		id, what, ok := bytes.Cut(p[len(apiBase+"invocation/"):], []byte("/"))
		if !ok || len(id) == 0 || (string(what) != "response" && string(what) != "error") {
			notFound(w, r)
			return
		}
		if r.method != http.MethodPost {
			methodNotAllowed(w, http.MethodPost)
			return
		}
		s.answer(w, r, id, string(what) == "error")
	case string(p) == apiBase+"init/error":
		if r.method != http.MethodPost {
			methodNotAllowed(w, http.MethodPost)
			return
		}
		s.initError(w, r)
	default:
		notFound(w, r)
	}
}

// next waits for an invocation and gives it to the runtime.
func (s *session) next(w *rapiResponse, r *rapiRequest) {
	s.mu.Lock()
	if s.cur != nil {
		id := s.cur.id
		s.mu.Unlock()
		writeError(w, http.StatusForbidden, "InvalidStateTransition",
			fmt.Sprintf("State transition from Invoke to Ready failed for runtime. Error: invocation %s has no answer yet", id))
		return
	}
	first := !s.asked
	if first {
		s.asked, s.ready = true, time.Now()
	}
	s.mu.Unlock()
	// What the runtime wrote before its first ask is its start-up's, and
	// goes with the first invocation; what it wrote after answering one
	// and before asking again belongs to none.
	if !first {
		if _, err := s.flush(r.ctx); err != nil {
			writeError(w, http.StatusInternalServerError, "InternalServerError", "the execution environment is shutting down")
			return
		}
	}
	var c *call
	for c == nil {
		select {
		case c = <-s.calls:
		default:
			// The runtime waits: one that hangs up meanwhile ends the
			// wait.
			r.watch()
			select {
			case c = <-s.calls:
			case <-s.dead:
				writeError(w, http.StatusInternalServerError, "InternalServerError", "the execution environment is shutting down")
				return
			case <-r.ctx.Done():
				return
			}
		}
		// The start is on record before the runtime has the event; one
		// that cannot be recorded does not run, here or anywhere.
		err := c.onStart(s.c.ID(), s.c.ImageDigest())
		c.started <- err
		if err != nil {
			c = nil
		}
	}
	s.mu.Lock()
	s.cur = c
	s.mu.Unlock()
	w.headerInt("Content-Length", int64(len(c.event)))
	w.header("Content-Type", "application/json")
	w.header("Lambda-Runtime-Aws-Request-Id", c.id)
	w.headerInt("Lambda-Runtime-Deadline-Ms", c.deadline.UnixMilli())
	w.header("Lambda-Runtime-Invoked-Function-Arn", s.arn)
	w.header("Lambda-Runtime-Trace-Id", traceHeader(c.trace))
	w.writeHeader(http.StatusOK)
	w.setBody(c.event)
	if err := w.send(); err != nil {
		// The runtime went away with the event, or before it: nothing can
		// answer it now.
		s.claim([]byte(c.id))
		c.done <- answer{at: time.Now(), fnErr: &engine.FunctionError{Type: "Runtime.Unavailable",
			Message: "the runtime's connection closed before it had the whole event"}}
		s.markDead()
	}
}

// claim takes the call in the runtime's hands off it, when id names it.
func (s *session) claim(id []byte) *call {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cur
	if c == nil || c.id != string(id) {
		return nil
	}
	s.cur = nil
	return c
}

// answer takes the runtime's response to an invocation, or its error.
func (s *session) answer(w *rapiResponse, r *rapiRequest, id []byte, failed bool) {
	c := s.claim(id)
	if c == nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
		return
	}
	payload, err := r.readBody(MaxPayload + 1)
	var a answer
	a.at = time.Now()
	// Everything the runtime wrote before it answered is in the init's
	// hands, or in its pipes, by now.
	if f, ferr := s.flush(context.WithoutCancel(r.ctx)); ferr == nil {
		a.logs, a.dropped = f.logs, f.dropped
	}
	switch {
	case err != nil:
		a.fnErr = &engine.FunctionError{Type: "Runtime.TruncatedResponse", Message: "the runtime's answer was cut short: " + err.Error()}
		c.done <- a
		writeError(w, http.StatusBadRequest, "TruncatedHTTPRequest", "HTTP request detected as truncated")
	case len(payload) > MaxPayload:
		what := "Response"
		if failed {
			what = "Error"
		}
		a.fnErr = &engine.FunctionError{Type: "Function.ResponseSizeTooLarge",
			Message: fmt.Sprintf("%s payload size exceeded maximum allowed payload size (%d bytes).", what, MaxPayload)}
		a.payload, _ = json.Marshal(errorBody{Type: a.fnErr.Type, Message: a.fnErr.Message})
		c.done <- a
		w.header("Connection", "close")
		writeError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge",
			fmt.Sprintf("Exceeded maximum allowed payload size (%d bytes).", MaxPayload))
	case failed:
		a.payload, a.fnErr = runtimeError(payload, r.errType, "Unhandled")
		c.done <- a
		accepted(w)
	default:
		a.payload = payload
		c.done <- a
		accepted(w)
	}
}

// initError takes the runtime's report that it could not start: the
// invocation that waits for it fails with it, and the session ends.
func (s *session) initError(w *rapiResponse, r *rapiRequest) {
	payload, _ := r.readBody(MaxPayload)
	s.mu.Lock()
	asked := s.asked
	s.mu.Unlock()
	if asked {
		writeError(w, http.StatusForbidden, "InvalidStateTransition",
			"State transition from Ready to InitError failed for runtime. Error: the runtime has started already")
		return
	}
	_, fnErr := runtimeError(payload, r.errType, "Runtime.Unknown")
	// The runtime may exit as soon as it has posted: its logs are still
	// the init's to give.
	f, _ := s.flush(context.WithoutCancel(r.ctx))
	s.mu.Lock()
	if s.end == nil {
		s.end = &ending{}
	}
	s.end.fnErr = fnErr
	s.end.logs = append(f.logs, s.end.logs...)
	s.end.dropped += f.dropped
	s.mu.Unlock()
	s.markDead()
	accepted(w)
}

// exitReported takes the init's report that the runtime has exited, or
// could not be started: 4 bytes of JSON length, the report, the last logs.
func (s *session) exitReported(payload []byte) {
	x, err := parseExit(payload)
	if err != nil {
		s.h.logger.Warn("a lambda container's init sent a bad exit report", "dir", s.dir, "err", err)
		s.markDead()
		return
	}
	s.mu.Lock()
	if s.end == nil {
		s.end = &ending{}
	}
	e := s.end
	e.logs = append(e.logs, x.logs...)
	e.dropped += x.Dropped
	e.exited, e.code, e.status = true, x.Code, x.status()
	if x.Error != "" && e.fnErr == nil {
		e.fnErr = &engine.FunctionError{Type: "Runtime.InvalidEntrypoint", Message: x.Error}
	}
	s.mu.Unlock()
	s.markDead()
}

// errorBody is Lambda's error document.
type errorBody struct {
	Message    string          `json:"errorMessage"`
	Type       string          `json:"errorType"`
	StackTrace json.RawMessage `json:"stackTrace,omitempty"`
}

// runtimeError reads an error the runtime posted: Lambda's error document,
// whose errorType is taken from the header, or fallback, when it has none.
// A body that is not such a document is replaced by one.
func runtimeError(payload []byte, header, fallback string) ([]byte, *engine.FunctionError) {
	var body errorBody
	if trimmed := bytes.TrimSpace(payload); len(trimmed) == 0 || trimmed[0] != '{' || json.Unmarshal(payload, &body) != nil {
		body = errorBody{}
		payload = nil
	}
	if body.Type == "" {
		body.Type = header
	}
	if body.Type == "" {
		body.Type = fallback
	}
	if payload == nil {
		payload, _ = json.Marshal(body)
	}
	return payload, &engine.FunctionError{Type: body.Type, Message: body.Message}
}

// accepted is the API's 202. The answers set their fields in the order of
// their names, as net/http wrote them.
func accepted(w *rapiResponse) {
	w.header("Content-Type", "application/json")
	w.writeHeader(http.StatusAccepted)
	w.WriteString(`{"status":"OK"}` + "\n")
}

func writeError(w *rapiResponse, status int, typ, msg string) {
	w.header("Content-Type", "application/json")
	w.writeHeader(status)
	json.NewEncoder(w).Encode(errorBody{Type: typ, Message: msg})
}

func notFound(w *rapiResponse, r *rapiRequest) {
	writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("%s is not a path of the Runtime API", r.path))
}

func methodNotAllowed(w *rapiResponse, allow string) {
	w.header("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "use "+allow)
}

// traceHeader is the Lambda-Runtime-Trace-Id of an invocation: its trace
// id in X-Ray's form, or a fresh one when it has none.
func traceHeader(id string) string {
	if id == "" {
		id = function.NewTraceID()
	}
	return function.XRayTraceHeader(id)
}

var _ engine.Hot = (*session)(nil)
