package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/engine"
)

// attempt is one run of an invocation, sync or async, in one container.
type attempt struct {
	f       projections.Function
	id      string // the invocation's
	n       int    // which attempt, from 1
	event   json.RawMessage
	timeout time.Duration
	// trace is the invocation's trace id; supplied says its caller gave
	// it, so that a cold function must have it in its environment.
	trace    string
	supplied bool
	// queued is a sync invocation's invocation.queued event, which the
	// attempt appends: before it asks the engine for anything or, with a
	// container that takes the event at once, in the commit of the
	// started event. Async attempts have it in the log already.
	queued *eventlog.Event
}

// run is the one attempt path. It takes a container from its source,
// records the start, delivers the event and returns the result, with the
// events it appended (the queued event of a sync invocation, and the
// started one when it got that far). The caller records how it ended.
// An error means the platform could not run the function; a function
// that failed has a Result that says so.
func (s *Service) run(ctx context.Context, a *attempt) (events []eventlog.Event, res engine.Result, err error) {
	// Once queued, the invocation is in the log and must end there, even if
	// the client goes away: records are appended on a context that outlives
	// it.
	record := context.WithoutCancel(ctx)
	// An invocation that could not run is on record, with how it could
	// not, unless it was refused.
	couldNot := func(err error) ([]eventlog.Event, engine.Result, error) {
		if a.queued == nil || errors.Is(err, function.ErrInvalid) || errors.Is(err, function.ErrBusy) {
			return nil, res, err
		}
		events, qerr := s.appendQueued(ctx, a.f, *a.queued)
		if qerr != nil {
			return nil, res, qerr
		}
		return events, res, err
	}
	c, err := s.take(ctx, a)
	if err != nil {
		return couldNot(err)
	}
	defer c.done()
	var pending []eventlog.Event
	if a.queued != nil {
		if c.prompt() {
			pending = []eventlog.Event{*a.queued}
		} else if events, err = s.appendQueued(ctx, a.f, *a.queued); err != nil {
			return nil, res, err
		}
	}
	s.metrics.InFlight.Inc()
	defer s.metrics.InFlight.Dec()
	started := func(containerID, imageDigest string) error {
		s.metrics.Starts.WithLabelValues(c.kind()).Inc()
		e, err := projections.NewInvocationStarted(a.f.ID, a.id, projections.InvocationStarted{
			Attempt: a.n, ContainerID: containerID, ImageDigest: imageDigest,
		})
		if err != nil {
			return err
		}
		var got []eventlog.Event
		if len(pending) > 0 {
			got, err = s.appendQueued(ctx, a.f, append(pending, e)...)
		} else {
			got, err = s.log.Append(record, e)
		}
		events = append(events, got...)
		return err
	}
	res, err = c.run(ctx, a, started)
	if err != nil && len(events) == 0 {
		// No container took it: each of a pool's had ended first, say.
		return couldNot(err)
	}
	return events, res, err
}

// appendQueued appends an invocation's queued event, and the events that go
// with it in the same commit, and returns them as appended. The function
// must still be live when they commit.
func (s *Service) appendQueued(ctx context.Context, f projections.Function, events ...eventlog.Event) ([]eventlog.Event, error) {
	return s.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		return projections.FunctionLive(r, f.ID)
	}, events...)
}

// appendScheduled appends the queued event of a schedule's firing: the
// schedule must still exist, and must not have fired for that instant or
// a later one, so that no instant fires twice.
func (s *Service) appendScheduled(ctx context.Context, f projections.Function, req function.Request, q eventlog.Event) ([]eventlog.Event, error) {
	return s.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		if err := projections.FunctionLive(r, f.ID); err != nil {
			return err
		}
		sc, err := projections.ScheduleOf(r, f.ID, req.ScheduleID)
		if err != nil {
			return err
		}
		if sc.LastDue != nil && !req.ScheduledAt.After(*sc.LastDue) {
			return fmt.Errorf("%w: schedule %s fired for %s already", function.ErrConflict, sc.ID, req.ScheduledAt.Format(time.RFC3339))
		}
		return nil
	}, q)
}

// queuedEvent is the invocation.queued event of a new invocation of f;
// req has passed its Check.
func queuedEvent(f projections.Resolved, id string, req function.Request, async bool) (eventlog.Event, error) {
	return projections.NewInvocationQueued(f.ID, id, projections.InvocationQueued{
		FunctionName: f.Name, FunctionVersion: f.Version, Async: async,
		Event: req.Event, Timeout: req.Timeout, CallbackURL: req.CallbackURL,
		ExecutedVersion: f.Executed(), Alias: f.Alias,
		TraceID: req.TraceID, TraceSupplied: req.TraceSupplied, CloudEvent: req.CloudEvent,
		ScheduleID: req.ScheduleID, ScheduledAt: req.ScheduledAt, DestinationOf: req.DestinationOf,
	})
}

// outcome is the payload of the event that would end the invocation after
// attempt a, from what the attempt did.
func outcome(a *attempt, res engine.Result, runErr error) projections.InvocationEnded {
	ended := projections.InvocationEnded{
		Attempt: a.n,
		Result:  string(res.Stdout), Logs: string(res.Stderr),
		DurationMS:      res.Duration.Milliseconds(),
		ResultTruncated: res.StdoutTruncated, LogsTruncated: res.StderrTruncated,
		InitDurationMS: res.InitDuration.Milliseconds(),
	}
	if res.FunctionError != nil {
		ended.LambdaErrorType = res.FunctionError.Type
	}
	if runErr != nil {
		ended.ErrorType = function.ErrorPlatform
		switch {
		case errors.Is(runErr, context.Canceled):
			ended.Error = "the client went away; the container was killed"
		case errors.Is(runErr, engine.ErrImageNotFound):
			ended.Error = fmt.Sprintf("%v: load it with POST /images or docker load, or fix the function's image", runErr)
		case errors.Is(runErr, engine.ErrEngineUnavailable):
			ended.Error = "the Docker engine is unreachable"
		case errors.Is(runErr, eventlog.ErrUnwritable):
			ended.Error = "the event log could not record the start (is its disk full?); the container was removed"
		default:
			ended.Error = runErr.Error()
		}
		return ended
	}
	code := res.ExitCode
	ended.ExitCode = &code
	switch ended.ErrorType = res.ErrorType(); ended.ErrorType {
	case "":
	case function.ErrorTimeout:
		ended.Error = fmt.Sprintf("timed out after %d s; the container was killed", int(a.timeout/time.Second))
	case function.ErrorOutputLimit:
		ended.Error = "the function's output passed the size limit; the container was killed"
	case function.ErrorOutOfMemory:
		ended.Error = "the function ran out of memory and was killed"
	default:
		switch fe := res.FunctionError; {
		case fe != nil && fe.Message != "":
			ended.Error = fe.Message
		case fe != nil:
			ended.Error = fe.Type
		default:
			ended.Error = fmt.Sprintf("the function exited with code %d", code)
		}
	}
	return ended
}

// end records the event that ends invocation id, counts it, and returns
// the event as appended. runErr and res are the last attempt's, for the
// duration metric. An async invocation's end is appended however long the
// log refuses it (until ctx ends). A sync one's (adm not nil), when the
// log refuses it, is appended in the background while the caller hears
// why (an error naming the invocation), and the admission's bytes are held
// until it lands. An async invocation's extra events go in the same commit
// as its end: the invocation of its destination, which is not lost if the
// server stops between the two.
func (s *Service) end(ctx context.Context, f projections.Function, id string, ended projections.InvocationEnded, res engine.Result, runErr error, adm *admission, extra ...eventlog.Event) (eventlog.Event, error) {
	e, err := projections.NewInvocationEnded(f.ID, id, ended)
	if err != nil {
		return e, err
	}
	count := func() {
		status := projections.StatusCompleted
		if ended.ErrorType != "" {
			status = projections.StatusFailed
		}
		s.metrics.Invocations.WithLabelValues(f.Name, status, string(ended.ErrorType)).Inc()
		if runErr == nil {
			s.metrics.Duration.WithLabelValues(f.Name).Observe(res.Duration.Seconds())
		}
	}
	var got []eventlog.Event
	if adm == nil {
		got, err = s.persist(ctx, append([]eventlog.Event{e}, extra...)...)
	} else if got, err = s.log.Append(ctx, e); errors.Is(err, eventlog.ErrUnwritable) {
		held := adm.later()
		s.persistLater(func() { count(); held.leave() }, e)
		return e, endNotRecorded{id: id, err: err}
	}
	if err != nil {
		return e, fmt.Errorf("record the end of invocation %s: %w", id, err)
	}
	count()
	return got[0], nil
}

// endNotRecorded is the error of a sync invocation that ran but whose end
// the log could not take yet: the caller should not run it again, but read
// its record once it is complete.
type endNotRecorded struct {
	id  string
	err error
}

func (e endNotRecorded) Error() string {
	return fmt.Sprintf("invocation %s ran, but its end is not recorded yet: %v", e.id, e.err)
}

func (e endNotRecorded) Unwrap() error { return e.err }

// InvocationID names the invocation whose end is not recorded yet.
func (e endNotRecorded) InvocationID() string { return e.id }
