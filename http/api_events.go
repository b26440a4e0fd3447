package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// GET /events streams the event log as Server-Sent Events: each event as
// dump prints it, its SSE id its seq, so that a client resumes exactly
// where it left off (?from=, or the Last-Event-ID its reconnect sends). A
// subscriber never slows an append (the log is read for it apart from the
// writer) and holds at most streamBuffer bytes of the server's memory
// beside one read chunk; one whose connection stalls is cut off, and
// resumes from its last id. The server serves DefaultMaxSubscribers at
// once, and each reserves what it may hold of the memory budget.

// Events is the log as a stream.
type Events interface {
	// Follow calls fn for each event matching f from seq from on, as they
	// are committed, until ctx ends or fn fails.
	Follow(ctx context.Context, from uint64, f eventlog.Filter, fn func(eventlog.Event) error) error
	// ReadRange calls fn for each event matching f from seq from to seq
	// to.
	ReadRange(ctx context.Context, from, to uint64, f eventlog.Filter, fn func(eventlog.Event) error) error
	Head() (uint64, eventlog.Hash)
}

// Bounds of one subscriber.
const (
	streamBuffer    = 4 << 20 // bytes queued for it at most
	streamKeepAlive = 15 * time.Second
	streamWriteWait = 10 * time.Second // a write stalled longer ends the stream
	// streamBytes is what a subscriber holds at most, and reserves of the
	// memory budget while it is open: its queue, and the chunk of the log
	// read for it (eventlog reads at most 4 MiB at once).
	streamBytes = streamBuffer + 4<<20
)

// DefaultMaxSubscribers is how many event streams the server serves at
// once (Options.MaxSubscribers); one more is refused with 429 and
// Retry-After. At streamBytes each, they hold at most half of the default
// memory budget.
const DefaultMaxSubscribers = 32

// admitSubscriber counts one more subscriber, and reserves what it may
// hold of the memory budget, or says ErrBusy: too many streams, or a
// budget that cannot hold one more.
func (s *Server) admitSubscriber() (release func(), err error) {
	n := &s.subscribers
	if n.Add(1) > int64(s.opts.MaxSubscribers) {
		n.Add(-1)
		return nil, fmt.Errorf("%w: the server serves %d event streams at once, the most it may; try again shortly", function.ErrBusy, s.opts.MaxSubscribers)
	}
	b := s.opts.Budget
	if b != nil {
		if err := b.Reserve(streamBytes); err != nil {
			n.Add(-1)
			if !errors.Is(err, function.ErrBusy) {
				err = fmt.Errorf("%w: %w", function.ErrBusy, err)
			}
			return nil, err
		}
	}
	return func() {
		if b != nil {
			b.Release(streamBytes)
		}
		n.Add(-1)
	}, nil
}

// redactedEvent is an event whose data had a secret taken out: its hash
// is the stored event's, which a client can no longer recompute.
type redactedEvent struct {
	eventlog.Event
	Redacted []string `json:"redacted,omitempty"`
}

// redactEvent takes out of an event the secrets the API never shows
// (projections knows where they sit in its payloads).
func redactEvent(e eventlog.Event) redactedEvent {
	var paths []string
	e.Data, paths = projections.Redact(e.Type, e.Data)
	return redactedEvent{Event: e, Redacted: paths}
}

// routeEvents registers the native API's event stream and invocation
// timelines.
func (s *Server) routeEvents(r group) {
	r.GET("/events", s.events)
	r.GET("/invocations/:id/events", s.invocationEvents)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	q := r.URL.Query()
	var from uint64
	if v := q.Get("from"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			s.writeError(w, r, badRequest{"from must be a seq, 1 or more"})
			return
		}
		from = n
	}
	// A reconnect's Last-Event-ID is the last event the client has: the
	// stream resumes after it. No seq follows the largest one.
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil || n == math.MaxUint64 {
			s.writeError(w, r, badRequest{"Last-Event-ID must be the seq of an event"})
			return
		}
		from = n + 1
	}
	if from == 0 {
		head, _ := s.opts.Events.Head()
		from = head + 1 // new events only
	}
	filter := eventlog.Filter{Type: q.Get("type")}
	if fn := q.Get("function"); fn != "" {
		if function.CheckID(fn) != nil {
			s.writeError(w, r, badRequest{"function must be a function's id or name"})
			return
		}
		filter.FunctionID = fn
		if f, err := s.opts.Views.Function(fn); err == nil {
			filter.FunctionID = f.ID
		}
	}

	release, err := s.admitSubscriber()
	if err != nil {
		w.Header().Set("Retry-After", "1")
		s.writeError(w, r, err)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	// The reader below holds what the subscriber reserved until it ends.
	readerDone := make(chan struct{})
	defer func() {
		cancel()
		<-readerDone
		release()
	}()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// An id of its own before any event: a client cut off before the first
	// one reconnects with it and misses nothing appended meanwhile.
	if from > 1 {
		fmt.Fprintf(w, "id: %d\n\n", from-1)
	}
	type frame struct {
		b   []byte
		err error
	}
	// The log is read for this subscriber by a goroutine of its own, which
	// waits (never holding the log) while streamBuffer bytes wait for the
	// client: a client that keeps reading catches up at its own pace, one
	// that stalls is cut off by the write deadline below.
	frames := make(chan frame, 64)
	var mu sync.Mutex
	queued := 0
	drained := make(chan struct{}, 1)
	go func() {
		defer close(readerDone)
		err := s.opts.Events.Follow(ctx, from, filter, func(e eventlog.Event) error {
			data, err := json.Marshal(redactEvent(e))
			if err != nil {
				return err
			}
			b := fmt.Appendf(nil, "id: %d\ndata: %s\n\n", e.Seq, data)
			for {
				mu.Lock()
				if queued == 0 || queued+len(b) <= streamBuffer {
					queued += len(b)
					mu.Unlock()
					break
				}
				mu.Unlock()
				select {
				case <-drained:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			select {
			case frames <- frame{b: b}:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		select {
		case frames <- frame{err: err}:
		case <-ctx.Done():
		}
	}()
	if err := rc.Flush(); err != nil {
		return
	}

	keepAlive := time.NewTicker(streamKeepAlive)
	defer keepAlive.Stop()
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteWait))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	for {
		select {
		case f := <-frames:
			if f.b == nil {
				if f.err != nil && !errors.Is(f.err, context.Canceled) {
					s.log.Warn("event stream ended", "err", f.err, "remote", r.RemoteAddr)
					write([]byte(": the stream ended: " + f.err.Error() + "; reconnect with Last-Event-ID\n\n"))
				}
				return
			}
			mu.Lock()
			queued -= len(f.b)
			mu.Unlock()
			select {
			case drained <- struct{}{}:
			default:
			}
			if !write(f.b) {
				s.log.Info("event stream cut off: its client stopped reading", "remote", r.RemoteAddr)
				return
			}
		case <-keepAlive.C:
			if !write([]byte(": keep-alive\n\n")) {
				return
			}
		case <-ctx.Done():
			return
		case <-s.streamsEnd:
			return
		}
	}
}

// EndStreams ends every event stream, as the server shuts down: their
// clients reconnect, with Last-Event-ID, to wherever the server comes
// back.
func (s *Server) EndStreams() {
	s.endOnce.Do(func() {
		close(s.streamsEnd)
	})
}

// invocationTimeline is the answer of GET /invocations/{id}/events.
type invocationTimeline struct {
	InvocationID string           `json:"invocation_id"`
	Events       []eventlog.Event `json:"events"`
}

// invocationEvents answers with an invocation's events, as dump prints
// them: queued, each attempt's start and its end or retry, the callback's
// delivery. The record points at its first and its latest event, and only
// the log between them is read: an old invocation costs no more to read
// than a new one.
func (s *Server) invocationEvents(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	id, ok := s.ref(w, r, p)
	if !ok {
		return
	}
	first, last, err := s.opts.Views.InvocationSpan(id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := invocationTimeline{InvocationID: id, Events: []eventlog.Event{}}
	err = s.opts.Events.ReadRange(r.Context(), first, last, eventlog.Filter{InvocationID: id}, func(e eventlog.Event) error {
		out.Events = append(out.Events, e)
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
