package docker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/minilambda/minilambda/runner/engine"
)

// LabelDetached marks a long-lived container that takes its work through
// its mounts.
const LabelDetached = "minilambda.detached"

// detached is a long-lived container started with no stream attached:
// the engine copies none of its output, and nothing passes through the
// engine while it works.
type detached struct {
	d       *Docker
	id      string
	digest  string
	logger  *slog.Logger
	exited  chan struct{}
	closing chan struct{} // closed when Close begins
	closed  sync.Once

	mu        sync.Mutex
	stateRead bool
	code      int
	oomKilled bool
}

// StartDetached creates and starts a detached container for s; see
// engine.Driver.
func (d *Docker) StartDetached(ctx context.Context, s engine.Spec) (engine.Detached, error) {
	s, err := s.Normalize()
	if err != nil {
		return nil, err
	}
	img, err := d.inspectImage(ctx, s.Image)
	if err != nil {
		return nil, err
	}
	config, hostConfig := containerConfig(s, img.ID)
	config.Labels[LabelDetached] = "true"
	if len(s.Wrap) > 0 {
		config.Entrypoint = wrappedCommand(s, img)
	}
	logger := d.logger.With("function_id", s.FunctionID, "function_name", s.FunctionName, "detached", true)
	createCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	created, err := d.api.ContainerCreate(createCtx, config, hostConfig, nil, nil, containerName("detached-"+s.FunctionID))
	cancel()
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("%w: %q (removed meanwhile)", engine.ErrImageNotFound, s.Image)
		}
		return nil, wrapEngineErr("create detached container", err)
	}
	c := &detached{d: d, id: created.ID, digest: img.ID, logger: logger.With("container_id", created.ID),
		exited: make(chan struct{}), closing: make(chan struct{})}
	// Registered before the start, so that the exit is never missed; it
	// lasts as long as the container.
	waitCtx, cancelWait := context.WithCancel(context.WithoutCancel(ctx))
	waitC, errC := d.api.ContainerWait(waitCtx, c.id, container.WaitConditionNextExit)
	go c.watch(waitCtx, cancelWait, waitC, errC)
	if err := d.api.ContainerStart(ctx, c.id, container.StartOptions{}); err != nil {
		c.Close(ctx)
		return nil, d.runErr(ctx, "start detached container", err)
	}
	return c, nil
}

// watch closes exited once the engine says the container stopped, or is
// gone. A wait cut short (the engine's connection lost) says nothing of
// the container, which may well run on: the wait is made again, backing
// off, until the engine answers or the container is closed.
func (c *detached) watch(ctx context.Context, cancel context.CancelFunc, waitC <-chan container.WaitResponse, errC <-chan error) {
	defer close(c.exited)
	defer cancel()
	var pause time.Duration
	for {
		select {
		case <-waitC:
			return
		case err := <-errC:
			if isNotFound(err) {
				return
			}
			c.logger.Debug("wait for a detached container cut short; waiting again", "error", err)
		}
		pause = min(max(2*pause, 100*time.Millisecond), 2*time.Second)
		select {
		case <-c.closing:
			return
		case <-time.After(pause):
		}
		// Not running, rather than next exit: an exit while the engine
		// was away counts.
		waitC, errC = c.d.api.ContainerWait(ctx, c.id, container.WaitConditionNotRunning)
	}
}

func (c *detached) ID() string              { return c.id }
func (c *detached) ImageDigest() string     { return c.digest }
func (c *detached) Exited() <-chan struct{} { return c.exited }

// ExitState reads how the container ended, once; ask before Close, which
// removes it. It says -1 when the engine could not tell.
func (c *detached) ExitState(ctx context.Context) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stateRead {
		c.code = -1
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), inspectTimeout)
		defer cancel()
		if info, err := c.d.api.ContainerInspect(ctx, c.id); err == nil && info.State != nil {
			c.code, c.oomKilled = info.State.ExitCode, info.State.OOMKilled
			c.stateRead = true
		}
	}
	return c.code, c.oomKilled
}

// Close kills and removes the container: a forced removal does both.
func (c *detached) Close(ctx context.Context) {
	c.closed.Do(func() {
		close(c.closing)
		c.d.remove(ctx, c.id, c.logger)
	})
}
