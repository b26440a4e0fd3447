// Package control is Mini Lambda's control plane: it registers, updates
// and deletes functions, publishes their versions, keeps their aliases and
// schedules, and loads images into the engine, each change an event
// appended to the log before it is answered. It runs nothing.
//
// It is a package of its own, not a second type in runner, so that the
// line between the planes is one the compiler keeps: the control plane
// sees the data plane (runner.Service) only through [Runner], three calls
// that tell it what changed, and cannot reach its pools, queue or limits;
// the data plane reads functions and schedules from the views, never from
// the control plane. It never imports runner itself, only runner/engine for
// the engine's errors.
package control

import (
	"context"
	"errors"
	"io"
	"maps"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/projections"
)

// Runner is the data plane as the control plane needs it.
type Runner interface {
	// CheckCallback accepts an empty URL, or one the runner may send
	// callbacks to (the operator's allow-list), else an error wrapping
	// function.ErrInvalid.
	CheckCallback(url string) error
	// Retire lets go of the containers the function fnID runs in, once an
	// update changed its settings or, deleted, it and its published
	// versions are gone: the next invocation starts the new settings'.
	Retire(fnID string, deleted bool)
	// Reschedule tells the scheduler that the schedules changed.
	Reschedule()
}

// Engine is what the control plane asks of the container engine: the
// images it has, and loading more. engine.Driver has these calls.
type Engine interface {
	Images(ctx context.Context) (map[string]string, error)
	ImageID(ctx context.Context, ref string) (string, error)
	LoadImage(ctx context.Context, r io.Reader) ([]string, error)
	BuildImage(ctx context.Context, buildContext io.Reader, tag string, labels map[string]string) (string, error)
}

// Options configure New.
type Options struct {
	Log    *eventlog.Log
	Engine Engine
	Runner Runner
	// Views reads what the log holds; the runner's (runner.Service.Views),
	// so that both planes share one cache. New makes its own when nil.
	Views *projections.Views
	// RuntimeImages maps each runtime a zip package may name to its base
	// image; DefaultRuntimeImages when nil.
	RuntimeImages map[string]string
}

// Plane is the control plane. Its methods are safe for concurrent use.
type Plane struct {
	log      *eventlog.Log
	views    *projections.Views
	engine   Engine
	runner   Runner
	runtimes map[string]string
}

// New returns the control plane over the log, the engine and the runner in
// opts.
func New(opts Options) (*Plane, error) {
	if opts.Log == nil || opts.Engine == nil || opts.Runner == nil {
		return nil, errors.New("control: a log, an engine and a runner are required")
	}
	if opts.Views == nil {
		opts.Views = projections.NewViews(opts.Log)
	}
	if opts.RuntimeImages == nil {
		opts.RuntimeImages = DefaultRuntimeImages()
	}
	return &Plane{log: opts.Log, views: opts.Views, engine: opts.Engine, runner: opts.Runner, runtimes: maps.Clone(opts.RuntimeImages)}, nil
}
