package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

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
	d      *Docker
	id     string
	digest string
	logger *slog.Logger
	exited chan struct{}
	closed sync.Once

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
	config.AttachStdin, config.AttachStdout, config.AttachStderr = false, false, false
	config.OpenStdin, config.StdinOnce = false, false
	config.Labels[LabelDetached] = "true"
	if len(s.Wrap) > 0 {
		var entrypoint, cmd []string
		if img.Config != nil {
			entrypoint, cmd = img.Config.Entrypoint, img.Config.Cmd
		}
		// The function's own replace the image's, as in containerConfig.
		if len(s.Entrypoint) > 0 {
			entrypoint, cmd = s.Entrypoint, nil
		}
		if len(s.Cmd) > 0 {
			cmd = s.Cmd
		}
		// Setting the entrypoint drops the image's command, so both follow
		// the wrapper as its arguments.
		config.Entrypoint = slices.Concat(s.Wrap, entrypoint, cmd)
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
	c := &detached{d: d, id: created.ID, digest: img.ID, logger: logger.With("container_id", created.ID), exited: make(chan struct{})}
	// Registered before the start, so that the exit is never missed; it
	// lasts as long as the container.
	waitCtx, cancelWait := context.WithCancel(context.WithoutCancel(ctx))
	waitC, errC := d.api.ContainerWait(waitCtx, c.id, container.WaitConditionNextExit)
	go func() {
		defer cancelWait()
		select {
		case <-waitC:
		case err := <-errC:
			if !errors.Is(err, context.Canceled) {
				c.logger.Debug("wait for a detached container ended", "error", err)
			}
		}
		close(c.exited)
	}()
	if err := d.api.ContainerStart(ctx, c.id, container.StartOptions{}); err != nil {
		c.Close(ctx)
		return nil, d.runErr(ctx, "start detached container", err)
	}
	return c, nil
}

func (c *detached) ID() string              { return c.id }
func (c *detached) ImageDigest() string     { return c.digest }
func (c *detached) Exited() <-chan struct{} { return c.exited }

// ExitState reads how the container ended, once; ask before Close, which
// removes it.
func (c *detached) ExitState(ctx context.Context) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stateRead {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), inspectTimeout)
		defer cancel()
		if info, err := c.d.api.ContainerInspect(ctx, c.id); err == nil && info.State != nil {
			c.code, c.oomKilled = info.State.ExitCode, info.State.OOMKilled
			c.stateRead = true
		}
	}
	return c.code, c.oomKilled
}

// Close kills and removes the container.
func (c *detached) Close(ctx context.Context) {
	c.closed.Do(func() {
		c.d.kill(ctx, c.id, c.logger)
		c.d.remove(ctx, c.id, c.logger)
	})
}
