package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/engine"
	"github.com/oklog/ulid/v2"
)

// Invoke runs the function ref once with the request's event and returns
// the record. The record's status says how the function did; an error
// means the platform could not run it: projections.ErrNotFound,
// function.ErrBusy, function.ErrInvalid, or engine.ErrEngineUnavailable
// (with the FAILED record).
func (s *Service) Invoke(ctx context.Context, ref string, req function.Request) (projections.Invocation, error) {
	began := time.Now()
	var inv projections.Invocation
	rf, err := s.resolve(ref, req.Qualifier)
	if err != nil {
		return inv, err
	}
	f := rf.Function
	if req.CallbackURL != "" {
		return inv, fmt.Errorf("%w: callback_url is for async invocations; a sync caller gets the record in the answer", function.ErrInvalid)
	}
	if req, err = req.Check(); err != nil {
		return inv, err
	}
	// Nothing runs that could not be recorded, nor past the limits; the
	// outputs have room until the end is recorded: in the background, when
	// the log refuses it now.
	adm, err := s.admit(f, s.outputRoom(f))
	if err != nil {
		return inv, err
	}
	defer adm.leave()
	s.invoking.Add(1)
	defer s.invoking.Done()
	q, err := queuedEvent(rf, ulid.Make().String(), req, false)
	if err != nil {
		return inv, err
	}
	// From here on the event is held once, in the queued payload: the
	// attempt delivers that copy, and the request's can go.
	event, timeout := req.Event, f.TimeoutFor(req.Timeout)
	if p, err := projections.DecodeQueued(&q); err == nil {
		event = p.Event
	}
	a := &attempt{f: f, id: q.InvocationID, n: 1, event: event, timeout: timeout, queued: &q, trace: req.TraceID, supplied: req.TraceSupplied}
	events, res, runErr := s.run(ctx, a)
	if len(events) == 0 {
		return inv, runErr
	}
	e, err := s.end(context.WithoutCancel(ctx), f, a.id, outcome(a, res, runErr), res, runErr, adm)
	if err != nil {
		return inv, err
	}
	if inv, err = projections.Record(append(events, e)...); err != nil {
		return inv, err
	}
	if runErr == nil {
		mode := f.Mode
		if mode == "" {
			mode = function.ModeCold
		}
		s.metrics.Overhead.WithLabelValues(string(mode)).Observe((time.Since(began) - res.Duration).Seconds())
	}
	if errors.Is(runErr, engine.ErrEngineUnavailable) {
		return inv, runErr
	}
	return inv, nil
}
