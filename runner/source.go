package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
	"github.com/minilambda/minilambda/runner/engine"
)

// An attempt's container comes from one of three sources, chosen in take
// and nowhere else: a hot or lambda function's pool, or, for a cold function, the
// spare prestarted for it when it has one, else a fresh container created
// for the attempt.

// container is the container of one attempt, whichever source gave it.
type container interface {
	// kind names the source in the starts metric: cold, prestarted or warm.
	kind() string
	// prompt reports whether the container takes the event as soon as it
	// is handed over, with nothing asked of the engine first: then a sync
	// invocation's queued event can share the commit of its started event.
	prompt() bool
	// run delivers the attempt's event, calling started once the
	// container runs with it, and waits for the outcome.
	run(ctx context.Context, a *attempt, started engine.OnStart) (engine.Result, error)
	// done gives the container back, or lets it go, after run.
	done()
}

// take returns the container for attempt a.
func (s *Service) take(ctx context.Context, a *attempt) (container, error) {
	if a.f.Pooled() {
		// The line protocol takes an event on one line; the Runtime API
		// takes it as it is.
		line := []byte(a.event)
		if a.f.Hot() {
			var err error
			if line, err = compactEvent(a.event); err != nil {
				return nil, err
			}
		}
		h, p, warm, err := s.pools.get(ctx, a.f, a.timeout)
		if err != nil {
			return nil, err
		}
		return &hotContainer{s: s, f: a.f, p: p, h: h, warm: warm, line: line}, nil
	}
	// A spare's environment was fixed before its invocation came: one
	// whose caller gave a trace id starts its own, with TRACE_ID.
	if !a.supplied {
		if p := s.spares.take(ctx, a.f); p != nil {
			return &coldContainer{s: s, f: a.f, spare: p}, nil
		}
	}
	return &coldContainer{s: s, f: a.f}, nil
}

// TraceEnv is the variable a cold function started for its invocation
// finds the invocation's trace id in.
const TraceEnv = "TRACE_ID"

// containerSpec is the container of function f, for one invocation (cold)
// or for many (hot, with no invocation id).
func (s *Service) containerSpec(f projections.Function, invocationID string) engine.Spec {
	return engine.Spec{
		FunctionID: f.ID, FunctionName: f.Name, InvocationID: invocationID,
		Image: f.Image, Env: f.Env,
		MemoryMB: f.MemoryMB, CPUs: f.ContainerCPUs(s.opts.PooledCPUs), ReservedCPUs: f.CPUs, Network: f.Network, ReadOnly: f.ReadOnly,
		Entrypoint: f.Entrypoint, Cmd: f.RunCommand(), WorkingDir: f.WorkingDir,
		OutputLimit: s.opts.OutputLimit,
		Labels:      map[string]string{LabelInstance: s.opts.Instance},
	}
}

// coldContainer is a fresh container for one invocation: a spare
// prestarted for it, or, without one, a container the agent starts in
// run.
type coldContainer struct {
	s     *Service
	f     projections.Function
	spare engine.Prestarted
	ran   bool
}

func (c *coldContainer) kind() string {
	if c.spare != nil {
		return "prestarted"
	}
	return "cold"
}

func (c *coldContainer) prompt() bool { return false }

func (c *coldContainer) run(ctx context.Context, a *attempt, started engine.OnStart) (engine.Result, error) {
	c.ran = true
	if c.spare != nil {
		return c.spare.Run(ctx, a.event, a.timeout, started)
	}
	spec := c.s.containerSpec(c.f, a.id)
	if a.trace != "" {
		spec.Env = maps.Clone(spec.Env)
		if spec.Env == nil {
			spec.Env = map[string]string{}
		}
		spec.Env[TraceEnv] = a.trace
	}
	return c.s.agent.Run(ctx, spec, a.event, a.timeout, started)
}

// done lets go of a spare the attempt took but never ran (its queued
// event could not be appended), and has a container ready for the
// function's next invocation, whatever this one did.
func (c *coldContainer) done() {
	if c.spare != nil && !c.ran {
		c.s.spares.discard(c.spare)
	}
	c.s.spares.prestart(c.f)
}

// hotContainer is a container of a hot or lambda function's pool.
type hotContainer struct {
	s    *Service
	f    projections.Function
	p    *pool
	h    engine.Hot
	warm bool   // it had answered events before
	line []byte // the event, on one line for the line protocol
	// broken says why the container cannot take another event.
	broken string
}

func (c *hotContainer) kind() string {
	if c.warm {
		return "warm"
	}
	return "cold"
}

func (c *hotContainer) prompt() bool { return true }

// staleTries bounds the containers an attempt moves through when each
// turns out to have ended before it took the event.
const staleTries = 3

// run sends the event. A container that broke is the function's failure,
// which the Result describes, not an error; one that had ended before it
// took the event ran nothing, and the event goes to another.
func (c *hotContainer) run(ctx context.Context, a *attempt, started engine.OnStart) (engine.Result, error) {
	for try := 1; ; try++ {
		res, err := c.h.Do(engine.WithTraceID(ctx, a.trace), a.id, c.line, a.timeout, started)
		if errors.Is(err, engine.ErrHotStale) && try < staleTries {
			c.s.pools.put(c.f, c.p, c.h, err.Error())
			c.h, c.p, c.warm, err = c.s.pools.get(ctx, c.f, a.timeout)
			if err != nil {
				c.h = nil
				return res, err
			}
			continue
		}
		if err != nil {
			c.broken = err.Error()
		}
		if errors.Is(err, engine.ErrHotBroken) {
			return res, nil
		}
		return res, err
	}
}

func (c *hotContainer) done() {
	if c.h != nil {
		c.s.pools.put(c.f, c.p, c.h, c.broken)
	}
}

// compactEvent puts a JSON event on one line, as hot containers take it:
// as it is when it is one line already (a newline can only be white space
// between its tokens), compacted into a copy when it spans lines.
func compactEvent(event json.RawMessage) ([]byte, error) {
	if bytes.IndexByte(event, '\n') < 0 {
		return slices.Clip(event), nil
	}
	var line bytes.Buffer
	if err := json.Compact(&line, event); err != nil {
		return nil, fmt.Errorf("%w: the event is not JSON: %v", function.ErrInvalid, err)
	}
	return line.Bytes(), nil
}
