package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
	"github.com/oklog/ulid/v2"
)

// InvokeRequest is an invocation as a client asks for it.
type InvokeRequest struct {
	Event   json.RawMessage // the JSON event; {} when empty
	Timeout int             // seconds; the function's when zero
	// CallbackURL, for async invocations, overrides the function's.
	CallbackURL string
}

// MaxTimeout is the longest an invocation may run, as Lambda's 15 minutes.
const MaxTimeout = 900

// checkRequest refuses a timeout out of bounds and fills in the empty
// event.
func checkRequest(req InvokeRequest) (InvokeRequest, error) {
	if req.Timeout < 0 || req.Timeout > MaxTimeout {
		return req, fmt.Errorf("%w: timeout must be between 1 and %d seconds", ErrInvalid, MaxTimeout)
	}
	if len(req.Event) == 0 {
		req.Event = json.RawMessage("{}")
	}
	return req, nil
}

// appendQueued appends the invocation.queued event of invocation id, and
// any events that go with it in the same commit, and returns them as
// appended; the function must still be live when they commit. req has
// passed checkRequest.
func (a *Agent) appendQueued(ctx context.Context, f projections.Function, id string, req InvokeRequest, async bool, more ...eventlog.Event) ([]eventlog.Event, error) {
	q, err := projections.NewEvent(projections.TypeInvocationQueued, f.ID, id, projections.InvocationQueued{
		V: 1, FunctionName: f.Name, FunctionVersion: f.Version, Async: async,
		Event: req.Event, Timeout: req.Timeout, CallbackURL: req.CallbackURL,
	})
	if err != nil {
		return nil, err
	}
	return a.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		return projections.FunctionLive(r, f.ID)
	}, append([]eventlog.Event{q}, more...)...)
}

// Invoke runs the function ref once with the event and returns the
// record. The record's status says how the function did; an error means
// the platform could not run it: projections.ErrNotFound, ErrBusy,
// ErrInvalid, or ErrEngineUnavailable (with the FAILED record).
func (a *Agent) Invoke(ctx context.Context, ref string, req InvokeRequest) (projections.Invocation, error) {
	began := time.Now()
	var inv projections.Invocation
	f, err := a.views.Function(ref)
	if err != nil {
		return inv, err
	}
	if req.CallbackURL != "" {
		return inv, fmt.Errorf("%w: callback_url is for async invocations; a sync caller gets the record in the answer", ErrInvalid)
	}
	if req, err = checkRequest(req); err != nil {
		return inv, err
	}
	if err := a.acquire(f); err != nil {
		return inv, err
	}
	defer a.release(f)
	a.wg.Add(1)
	defer a.wg.Done()
	// The invocation's events as appended, to answer with its record.
	var events []eventlog.Event
	var res runner.Result
	var runErr error
	if f.Mode == "hot" {
		events, res, runErr = a.invokeHot(ctx, f, req)
		if len(events) == 0 {
			return inv, runErr
		}
	} else {
		if events, err = a.appendQueued(ctx, f, ulid.Make().String(), req, false); err != nil {
			return inv, err
		}
		// From here on the invocation is in the log and must end there,
		// even if the client goes away.
		var started []eventlog.Event
		res, started, runErr = a.attempt(ctx, f, events[0].InvocationID, req.Event, req.Timeout, 1)
		events = append(events, started...)
	}
	typ, ended := outcome(res, runErr, f, req.Timeout, 1)
	e, err := a.end(context.WithoutCancel(ctx), f, events[0].InvocationID, typ, ended, res, runErr)
	if err != nil {
		return inv, err
	}
	inv, err = projections.Record(append(events, e)...)
	if err != nil {
		return inv, err
	}
	if runErr == nil {
		mode := "cold"
		if f.Mode == "hot" {
			mode = "hot"
		}
		a.metrics.Overhead.WithLabelValues(mode).Observe((time.Since(began) - res.Duration).Seconds())
	}
	if errors.Is(runErr, runner.ErrEngineUnavailable) {
		return inv, runErr
	}
	return inv, nil
}

// attempt runs one attempt of invocation id in a fresh container and
// records its start, which it returns when it got that far. The caller
// records how it ended.
func (a *Agent) attempt(ctx context.Context, f projections.Function, id string, input json.RawMessage, timeout, n int) (res runner.Result, started []eventlog.Event, err error) {
	if len(input) == 0 {
		input = json.RawMessage("{}")
	}
	if timeout == 0 {
		timeout = f.Timeout
	}
	record := context.WithoutCancel(ctx)
	a.metrics.InFlight.Inc()
	defer a.metrics.InFlight.Dec()
	if f.Mode == "hot" {
		return a.attemptHot(ctx, f, id, input, timeout, n)
	}
	kind := "cold"
	onStart := func(containerID, digest string) error {
		a.metrics.Starts.WithLabelValues(kind).Inc()
		e, err := startedEvent(f, id, n, containerID, digest)
		if err != nil {
			return err
		}
		started, err = a.log.Append(record, e)
		return err
	}
	// Whatever happens, have a container ready for this function's next
	// invocation.
	defer a.prestart(f)
	if p := a.takeSpare(f, timeout); p != nil {
		kind = "prestarted"
		res, err = p.Run(ctx, input, onStart)
		return res, started, err
	}
	spec := a.coldSpec(f, timeout)
	spec.InvocationID, spec.Input, spec.OnStart = id, input, onStart
	res, err = a.run.Run(ctx, spec)
	return res, started, err
}

// coldSpec is the container of one cold invocation of f.
func (a *Agent) coldSpec(f projections.Function, timeout int) runner.Spec {
	return runner.Spec{
		FunctionID: f.ID, FunctionName: f.Name,
		Image: f.Image, Env: f.Env,
		Timeout:  time.Duration(timeout) * time.Second,
		MemoryMB: int64(f.MemoryMB), CPUs: f.CPUs, Network: f.Network,
		OutputLimit: a.opts.OutputLimit, ReadOnly: f.ReadOnly,
		Labels: map[string]string{LabelInstance: a.opts.Instance},
	}
}

// end records the final event of an invocation, counts it, and returns
// the event as appended.
func (a *Agent) end(ctx context.Context, f projections.Function, id, typ string, ended projections.InvocationEnded, res runner.Result, runErr error) (eventlog.Event, error) {
	e, err := projections.NewEvent(typ, f.ID, id, ended)
	if err != nil {
		return e, err
	}
	got, err := a.log.Append(ctx, e)
	if err != nil {
		return e, fmt.Errorf("record the end of invocation %s: %w", id, err)
	}
	status := projections.StatusCompleted
	if typ != projections.TypeInvocationCompleted {
		status = projections.StatusFailed
	}
	a.metrics.Invocations.WithLabelValues(f.Name, status, ended.ErrorType).Inc()
	if runErr == nil {
		a.metrics.Duration.WithLabelValues(f.Name).Observe(res.Duration.Seconds())
	}
	return got[0], nil
}

// outcome turns what the runner said into the event that would end the
// invocation.
func outcome(res runner.Result, runErr error, f projections.Function, timeout, n int) (string, projections.InvocationEnded) {
	if timeout == 0 {
		timeout = f.Timeout
	}
	ended := projections.InvocationEnded{
		V: 1, Attempt: n,
		Result: string(res.Stdout), Logs: string(res.Stderr),
		DurationMS:      res.Duration.Milliseconds(),
		ResultTruncated: res.StdoutTruncated, LogsTruncated: res.StderrTruncated,
	}
	if runErr != nil {
		ended.ErrorType = projections.ErrorPlatform
		switch {
		case errors.Is(runErr, context.Canceled):
			ended.Error = "the client went away; the container was killed"
		case errors.Is(runErr, runner.ErrImageNotFound):
			ended.Error = fmt.Sprintf("%v: load it with POST /images or docker load, or fix the function's image", runErr)
		case errors.Is(runErr, runner.ErrEngineUnavailable):
			ended.Error = "the Docker engine is unreachable"
		default:
			ended.Error = runErr.Error()
		}
		return projections.TypeInvocationFailed, ended
	}
	code := res.ExitCode
	ended.ExitCode = &code
	switch res.ErrorType() {
	case "":
		return projections.TypeInvocationCompleted, ended
	case projections.ErrorTimeout:
		ended.ErrorType = projections.ErrorTimeout
		ended.Error = fmt.Sprintf("timed out after %d s; the container was killed", timeout)
		return projections.TypeInvocationTimedOut, ended
	case projections.ErrorOutputLimit:
		ended.ErrorType = projections.ErrorOutputLimit
		ended.Error = "the function's output passed the size limit; the container was killed"
	case projections.ErrorOutOfMemory:
		ended.ErrorType = projections.ErrorOutOfMemory
		ended.Error = "the function ran out of memory and was killed"
	default:
		ended.ErrorType = projections.ErrorFunction
		ended.Error = fmt.Sprintf("the function exited with code %d", code)
	}
	return projections.TypeInvocationFailed, ended
}

func (a *Agent) acquire(f projections.Function) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.tryAcquireLocked(f) {
		if a.inFlight >= a.opts.MaxInFlight {
			return fmt.Errorf("%w: the server runs %d invocations, its limit", ErrBusy, a.inFlight)
		}
		return fmt.Errorf("%w: function %s runs %d invocations, its concurrency", ErrBusy, f.Name, f.Concurrency)
	}
	return nil
}

func (a *Agent) tryAcquireLocked(f projections.Function) bool {
	if a.inFlight >= a.opts.MaxInFlight || f.Concurrency > 0 && a.running[f.ID] >= f.Concurrency {
		return false
	}
	a.inFlight++
	a.running[f.ID]++
	return true
}

func (a *Agent) release(f projections.Function) {
	a.mu.Lock()
	a.inFlight--
	if a.running[f.ID]--; a.running[f.ID] == 0 {
		delete(a.running, f.ID)
	}
	a.mu.Unlock()
	a.wakeWorkers()
}
