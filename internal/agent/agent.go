// Package agent is what the HTTP handlers submit work to: it validates
// function specs, appends the events that record every change, and runs
// invocations through the runner, recording each step in the event log
// before it answers. It never exposes Docker to its callers.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/internal/metrics"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner"
	"github.com/oklog/ulid/v2"
)

var (
	// ErrInvalid wraps what is wrong with a request; the message says it in
	// words the user can act on.
	ErrInvalid = errors.New("invalid request")
	// ErrConflict means a name is taken or a function changed meanwhile.
	ErrConflict = errors.New("conflict")
	// ErrBusy means the function, or the server, runs as many invocations
	// as it may.
	ErrBusy = errors.New("concurrency limit reached")
)

// Runner is what the agent needs of the Docker runner.
type Runner interface {
	Run(ctx context.Context, s runner.Spec) (runner.Result, error)
	LoadImage(ctx context.Context, r io.Reader) ([]string, error)
	ListImages(ctx context.Context) ([]string, error)
	Ping(ctx context.Context) error
	RemoveManaged(ctx context.Context, selector map[string]string) (int, error)
}

var _ Runner = (*runner.Docker)(nil)

// Options configure New.
type Options struct {
	Log     *eventlog.Log
	Runner  Runner
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	// Instance labels this server's containers, so that start-up cleanup
	// removes only its own.
	Instance string
	// MaxInFlight bounds the invocations running at once, all functions
	// together; 64 when zero.
	MaxInFlight int
	// OutputLimit caps stdout and stderr of an invocation, each;
	// runner.DefaultOutputLimit when zero.
	OutputLimit int64
}

// Agent runs invocations and records functions and invocations in the log.
type Agent struct {
	log     *eventlog.Log
	views   *projections.Views
	run     Runner
	logger  *slog.Logger
	metrics *metrics.Metrics
	opts    Options

	// wg counts invocations under way, so shutdown can wait for them to be
	// recorded.
	wg sync.WaitGroup

	mu       sync.Mutex
	inFlight int
	running  map[string]int // by function id
}

// LabelInstance is the container label naming the server that created it.
const LabelInstance = "minilambda.instance"

// New returns an agent over the log and runner in opts.
func New(opts Options) (*Agent, error) {
	if opts.Log == nil || opts.Runner == nil {
		return nil, errors.New("agent: a log and a runner are required")
	}
	if opts.MaxInFlight == 0 {
		opts.MaxInFlight = 64
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Agent{
		log: opts.Log, views: projections.NewViews(opts.Log), run: opts.Runner,
		logger: logger.With("subsystem", "agent"), metrics: opts.Metrics, opts: opts,
		running: make(map[string]int),
	}, nil
}

// Views is the read side the agent writes through.
func (a *Agent) Views() *projections.Views { return a.views }

// Register validates spec, fills its defaults and records a new function.
func (a *Agent) Register(ctx context.Context, spec projections.FunctionSpec) (projections.Function, error) {
	spec, err := Normalize(spec)
	if err != nil {
		return projections.Function{}, err
	}
	id := ulid.Make().String()
	e, err := projections.NewEvent(projections.TypeFunctionRegistered, id, "", projections.FunctionRegistered{
		V: 1, FunctionSpec: spec, CreatedAt: time.Now().UTC(),
	})
	if err != nil {
		return projections.Function{}, err
	}
	_, err = a.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		if projections.NameTaken(r, spec.Name) {
			return fmt.Errorf("%w: a function named %q exists already", ErrConflict, spec.Name)
		}
		return nil
	}, e)
	if err != nil {
		return projections.Function{}, err
	}
	return a.views.Function(id)
}

// Patch is a change to a function: the fields that are set replace the
// function's.
type Patch struct {
	Name        *string            `json:"name"`
	Image       *string            `json:"image"`
	Timeout     *int               `json:"timeout"`
	MemoryMB    *int               `json:"memory_mb"`
	CPUs        *float64           `json:"cpus"`
	Env         *map[string]string `json:"env"`
	Mode        *string            `json:"mode"`
	Concurrency *int               `json:"concurrency"`
	Network     *string            `json:"network"`
}

func (p Patch) apply(s projections.FunctionSpec) projections.FunctionSpec {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&s.Name, p.Name)
	set(&s.Image, p.Image)
	set(&s.Mode, p.Mode)
	set(&s.Network, p.Network)
	if p.Timeout != nil {
		s.Timeout = *p.Timeout
	}
	if p.MemoryMB != nil {
		s.MemoryMB = *p.MemoryMB
	}
	if p.CPUs != nil {
		s.CPUs = *p.CPUs
	}
	if p.Env != nil {
		s.Env = *p.Env
	}
	if p.Concurrency != nil {
		s.Concurrency = *p.Concurrency
	}
	return s
}

// Update applies patch to the live function ref and records the new
// version.
func (a *Agent) Update(ctx context.Context, ref string, patch Patch) (projections.Function, error) {
	f, err := a.views.Function(ref)
	if err != nil {
		return f, err
	}
	spec, err := Normalize(patch.apply(f.FunctionSpec))
	if err != nil {
		return f, err
	}
	e, err := projections.NewEvent(projections.TypeFunctionUpdated, f.ID, "", projections.FunctionUpdated{
		V: 1, Version: f.Version + 1, FunctionSpec: spec,
	})
	if err != nil {
		return f, err
	}
	_, err = a.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		cur, err := projections.FunctionByRef(r, f.ID)
		if err != nil {
			return err
		}
		if cur.Version != f.Version {
			return fmt.Errorf("%w: function %s changed meanwhile; try again", ErrConflict, f.Name)
		}
		if spec.Name != f.Name && projections.NameTaken(r, spec.Name) {
			return fmt.Errorf("%w: a function named %q exists already", ErrConflict, spec.Name)
		}
		return nil
	}, e)
	if err != nil {
		return f, err
	}
	return a.views.Function(f.ID)
}

// Delete records the removal of the live function ref. Its invocations
// stay readable.
func (a *Agent) Delete(ctx context.Context, ref string) error {
	f, err := a.views.Function(ref)
	if err != nil {
		return err
	}
	e, err := projections.NewEvent(projections.TypeFunctionDeleted, f.ID, "", projections.FunctionDeleted{V: 1})
	if err != nil {
		return err
	}
	_, err = a.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		_, err := projections.FunctionByRef(r, f.ID)
		return err
	}, e)
	return err
}

// Wait returns once no invocation is under way.
func (a *Agent) Wait() { a.wg.Wait() }

// Health reports whether the Docker engine answers.
func (a *Agent) Health(ctx context.Context) error { return a.run.Ping(ctx) }

// Head returns the event log's head, for operators to keep elsewhere.
func (a *Agent) Head() (uint64, eventlog.Hash) { return a.log.Head() }

// TypeImageLoaded is the event recording an image upload.
const TypeImageLoaded = "image.loaded"

// ImageLoaded is the payload of image.loaded.
type ImageLoaded struct {
	V    int      `json:"v"`
	Tags []string `json:"tags"`
}

// LoadImage loads a `docker save` archive into the engine and records
// what it loaded.
func (a *Agent) LoadImage(ctx context.Context, r io.Reader) ([]string, error) {
	tags, err := a.run.LoadImage(ctx, r)
	if err != nil {
		return nil, err
	}
	e, err := projections.NewEvent(TypeImageLoaded, "", "", ImageLoaded{V: 1, Tags: tags})
	if err != nil {
		return nil, err
	}
	if _, err := a.log.Append(context.WithoutCancel(ctx), e); err != nil {
		return nil, err
	}
	return tags, nil
}

// ListImages lists the image tags the engine has.
func (a *Agent) ListImages(ctx context.Context) ([]string, error) { return a.run.ListImages(ctx) }

// InvokeRequest is a synchronous invocation.
type InvokeRequest struct {
	Event   json.RawMessage // the JSON event; {} when empty
	Timeout int             // seconds; the function's when zero
}

// MaxTimeout is the longest an invocation may run, as Lambda's 15 minutes.
const MaxTimeout = 900

// Invoke runs the function ref once with the event and returns the
// record. The record's status says how the function did; an error means
// the platform could not run it: projections.ErrNotFound, ErrBusy,
// ErrInvalid, or runner.ErrEngineUnavailable (with the FAILED record).
func (a *Agent) Invoke(ctx context.Context, ref string, req InvokeRequest) (projections.Invocation, error) {
	var inv projections.Invocation
	f, err := a.views.Function(ref)
	if err != nil {
		return inv, err
	}
	if req.Timeout < 0 || req.Timeout > MaxTimeout {
		return inv, fmt.Errorf("%w: timeout must be between 1 and %d seconds", ErrInvalid, MaxTimeout)
	}
	timeout := f.Timeout
	if req.Timeout > 0 {
		timeout = req.Timeout
	}
	input := req.Event
	if len(input) == 0 {
		input = json.RawMessage("{}")
	}
	if err := a.acquire(f); err != nil {
		return inv, err
	}
	defer a.release(f)
	a.wg.Add(1)
	defer a.wg.Done()

	id := ulid.Make().String()
	q, err := projections.NewEvent(projections.TypeInvocationQueued, f.ID, id, projections.InvocationQueued{
		V: 1, FunctionName: f.Name, FunctionVersion: f.Version, Event: input, Timeout: req.Timeout,
	})
	if err != nil {
		return inv, err
	}
	if _, err := a.log.AppendIf(ctx, func(r eventlog.ViewReader) error {
		_, err := projections.FunctionByRef(r, f.ID)
		return err
	}, q); err != nil {
		return inv, err
	}
	// From here on the invocation is in the log and must end there, even
	// if the client goes away.
	record := context.WithoutCancel(ctx)
	a.metrics.InFlight.Inc()
	res, runErr := a.run.Run(ctx, runner.Spec{
		FunctionID: f.ID, FunctionName: f.Name, InvocationID: id,
		Image: f.Image, Env: f.Env, Input: input,
		Timeout:  time.Duration(timeout) * time.Second,
		MemoryMB: int64(f.MemoryMB), CPUs: f.CPUs, Network: f.Network,
		OutputLimit: a.opts.OutputLimit,
		Labels:      map[string]string{LabelInstance: a.opts.Instance},
		OnStart: func(containerID, digest string) error {
			a.metrics.Starts.WithLabelValues("cold").Inc()
			e, err := projections.NewEvent(projections.TypeInvocationStarted, f.ID, id, projections.InvocationStarted{
				V: 1, Attempt: 1, ContainerID: containerID, ImageDigest: digest,
			})
			if err != nil {
				return err
			}
			_, err = a.log.Append(record, e)
			return err
		},
	})
	a.metrics.InFlight.Dec()
	typ, ended := outcome(res, runErr, timeout)
	e, err := projections.NewEvent(typ, f.ID, id, ended)
	if err != nil {
		return inv, err
	}
	if _, err := a.log.Append(record, e); err != nil {
		return inv, fmt.Errorf("record the end of invocation %s: %w", id, err)
	}
	status := projections.StatusCompleted
	if typ != projections.TypeInvocationCompleted {
		status = projections.StatusFailed
	}
	a.metrics.Invocations.WithLabelValues(f.Name, status, ended.ErrorType).Inc()
	if runErr == nil {
		a.metrics.Duration.WithLabelValues(f.Name).Observe(res.Duration.Seconds())
	}
	inv, err = a.views.Invocation(id)
	if err != nil {
		return inv, err
	}
	if errors.Is(runErr, runner.ErrEngineUnavailable) {
		return inv, runErr
	}
	return inv, nil
}

// outcome turns what the runner said into the event that ends the
// invocation.
func outcome(res runner.Result, runErr error, timeout int) (string, projections.InvocationEnded) {
	ended := projections.InvocationEnded{
		V: 1, Attempt: 1,
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
	if a.inFlight >= a.opts.MaxInFlight {
		return fmt.Errorf("%w: the server runs %d invocations, its limit", ErrBusy, a.inFlight)
	}
	if f.Concurrency > 0 && a.running[f.ID] >= f.Concurrency {
		return fmt.Errorf("%w: function %s runs %d invocations, its concurrency", ErrBusy, f.Name, f.Concurrency)
	}
	a.inFlight++
	a.running[f.ID]++
	return nil
}

func (a *Agent) release(f projections.Function) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inFlight--
	if a.running[f.ID]--; a.running[f.ID] == 0 {
		delete(a.running, f.ID)
	}
}

// Errors from the runner that callers map to answers.
var (
	// ErrEngineUnavailable means the Docker engine does not answer.
	ErrEngineUnavailable = runner.ErrEngineUnavailable
	// ErrBadImage means an uploaded archive is not one the engine can load.
	ErrBadImage = runner.ErrBadImage
)
