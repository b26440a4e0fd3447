package docker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/minilambda/minilambda/runner/engine"
)

// prepared is a fresh container made ready for exactly one invocation:
// created from the resolved image, attached, its exit awaited and, when
// prestarted, already running and blocked on its stdin. Preparing ahead
// takes create, attach and start off the invocation's critical path while
// keeping one fresh container per invocation.
type prepared struct {
	d      *Docker
	s      engine.Spec
	logger *slog.Logger
	res    engine.Result // what is known so far: IDs, timings, outputs

	id                 string
	hj                 types.HijackedResponse
	attached           bool
	stdout, stderr     *capBuffer
	limitHit, copyDone chan struct{}
	stdinDone          chan struct{}
	stdinStarted       bool
	waitC              <-chan container.WaitResponse
	waitErrC           <-chan error
	cancelWait         context.CancelFunc
	waited             bool // whether the wait's answer, or its error, was received
	started            bool
	finished           bool
}

// Run executes one invocation in a fresh container and removes the container
// before it returns, whatever happened. See the package documentation for the
// steps. Cancelling ctx (the client hung up) kills and removes the container;
// Run then returns the partial Result and an error wrapping ctx.Err().
func (d *Docker) Run(ctx context.Context, s engine.Spec, input []byte, timeout time.Duration, onStart engine.OnStart) (res engine.Result, err error) {
	begin := time.Now()
	defer func() { res.Timings.Total = time.Since(begin) }()
	if _, err := engine.Timeout(timeout); err != nil {
		return res, err
	}
	p, err := d.prepare(ctx, s, false)
	if err != nil {
		return p.res, err
	}
	return p.run(ctx, input, timeout, onStart)
}

// Prestart prepares and starts a container for one later invocation of s,
// which the returned engine.Prestarted's Run delivers.
func (d *Docker) Prestart(ctx context.Context, s engine.Spec) (engine.Prestarted, error) {
	p, err := d.prepare(ctx, s, true)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Run delivers input to the prestarted container and waits for it as
// [Docker.Run] does; the timeout counts from the delivery. It removes the
// container whatever happens.
func (p *prepared) Run(ctx context.Context, input []byte, timeout time.Duration, onStart engine.OnStart) (res engine.Result, err error) {
	begin := time.Now()
	defer func() { res.Timings.Total = time.Since(begin) }()
	return p.run(ctx, input, timeout, onStart)
}

// Discard removes a prepared container that will not be used.
func (p *prepared) Discard(ctx context.Context) {
	if !p.finished && p.id != "" {
		p.d.kill(ctx, p.id, p.logger)
	}
	p.finish(ctx)
}

// prepare resolves the image, creates and attaches the container, registers
// the wait for its exit and, when start, starts it. On an error it has
// cleaned up already, and p.res says what it got to.
func (d *Docker) prepare(ctx context.Context, s engine.Spec, start bool) (p *prepared, err error) {
	p = &prepared{d: d}
	s, err = s.Normalize()
	if err != nil {
		return p, err
	}
	p.s = s
	p.logger = d.logger.With("function_id", s.FunctionID, "function_name", s.FunctionName, "invocation_id", s.InvocationID)
	defer func() {
		if err != nil {
			p.finish(ctx)
		}
	}()

	t := time.Now()
	imageID, err := d.ImageID(ctx, s.Image)
	p.res.Timings.Image = time.Since(t)
	if err != nil {
		return p, err
	}
	p.res.ImageDigest = imageID

	// Create, detached from ctx: a create that completes after the caller
	// hung up would leave a container whose ID nobody knows.
	config, hostConfig := containerConfig(s, imageID)
	t = time.Now()
	createCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	created, err := d.api.ContainerCreate(createCtx, config, hostConfig, nil, nil, containerName(s.InvocationID))
	cancel()
	p.res.Timings.Create = time.Since(t)
	if err != nil {
		if isNotFound(err) {
			return p, fmt.Errorf("%w: %q (removed meanwhile)", engine.ErrImageNotFound, s.Image)
		}
		return p, wrapEngineErr("create container", err)
	}
	p.id = created.ID
	p.res.ContainerID = p.id
	p.logger = p.logger.With("container_id", p.id)
	for _, w := range created.Warnings {
		p.logger.WarnContext(ctx, "container create warning", "warning", w)
	}
	if err := ctx.Err(); err != nil {
		return p, fmt.Errorf("runner: invocation abandoned: %w", err)
	}

	// Attach before start, so that no output is missed.
	t = time.Now()
	p.hj, err = d.api.ContainerAttach(ctx, p.id, container.AttachOptions{
		Stream: true, Stdin: true, Stdout: true, Stderr: true,
	})
	p.res.Timings.Attach = time.Since(t)
	if err != nil {
		return p, d.runErr(ctx, "attach container", err)
	}
	p.attached = true
	p.limitHit = make(chan struct{})
	var limitOnce sync.Once
	onExceed := func() { limitOnce.Do(func() { close(p.limitHit) }) }
	p.stdout = newCapBuffer(s.OutputLimit, onExceed)
	p.stderr = newCapBuffer(s.OutputLimit, onExceed)
	p.copyDone = make(chan struct{})
	p.stdinDone = make(chan struct{})
	go func() {
		defer close(p.copyDone)
		if _, err := stdcopy.StdCopy(p.stdout, p.stderr, p.hj.Reader); err != nil {
			p.logger.Debug("output stream ended", "error", err)
		}
	}()

	// Register the wait before start, so that the exit is never missed.
	var waitCtx context.Context
	waitCtx, p.cancelWait = context.WithCancel(context.WithoutCancel(ctx))
	p.waitC, p.waitErrC = d.api.ContainerWait(waitCtx, p.id, container.WaitConditionNextExit)
	select {
	case err := <-p.waitErrC:
		p.waited = true
		return p, d.runErr(ctx, "wait container", err)
	default:
	}
	if start {
		if err := p.start(ctx); err != nil {
			return p, err
		}
	}
	return p, nil
}

// ImageID returns the ID of the image ref names now: the image that will
// run, whatever the tag points at later.
func (d *Docker) ImageID(ctx context.Context, image string) (string, error) {
	img, err := d.inspectImage(ctx, image)
	return img.ID, err
}

// inspectImage returns what the engine knows of the image a reference
// names.
func (d *Docker) inspectImage(ctx context.Context, ref string) (image.InspectResponse, error) {
	img, err := d.api.ImageInspect(ctx, ref)
	if err != nil {
		switch {
		case isNotFound(err):
			return img, fmt.Errorf("%w: %q", engine.ErrImageNotFound, ref)
		case cerrdefs.IsInvalidArgument(err):
			return img, fmt.Errorf("%w: image %q: %w", engine.ErrInvalidSpec, ref, err)
		}
		return img, d.runErr(ctx, "inspect image", err)
	}
	return img, nil
}

func (p *prepared) start(ctx context.Context) error {
	t := time.Now()
	err := p.d.api.ContainerStart(ctx, p.id, container.StartOptions{})
	p.res.Timings.Start = time.Since(t)
	if err != nil {
		return p.d.runErr(ctx, "start container", err)
	}
	p.started = true
	return nil
}

// finish releases everything prepare and run set up and removes the
// container; it runs once.
func (p *prepared) finish(ctx context.Context) {
	if p.finished {
		return
	}
	p.finished = true
	if p.cancelWait != nil {
		p.cancelWait()
		if !p.waited {
			// The SDK's goroutine hands over exactly one of the two, and
			// the result without a buffer: take it, or it leaks.
			select {
			case <-p.waitC:
			case <-p.waitErrC:
			}
		}
	}
	if p.attached {
		p.hj.Close() // ends the copier and the stdin writer, if still going
		<-p.copyDone
		if p.stdinStarted {
			<-p.stdinDone
		}
		p.res.Stdout, p.res.StdoutTruncated = p.stdout.bytes()
		p.res.Stderr, p.res.StderrTruncated = p.stderr.bytes()
	}
	if p.id != "" {
		t := time.Now()
		p.d.remove(ctx, p.id, p.logger)
		p.res.Timings.Remove = time.Since(t)
	}
}

// run starts the container unless it was prestarted, delivers the input,
// waits for the exit within the timeout, and finishes.
func (p *prepared) run(ctx context.Context, input []byte, timeout time.Duration, onStart engine.OnStart) (res engine.Result, err error) {
	defer func() {
		p.finish(ctx)
		res = p.res
	}()
	if p.finished {
		return p.res, fmt.Errorf("docker: a prepared container serves one invocation")
	}
	if timeout, err = engine.Timeout(timeout); err != nil {
		return p.res, err
	}
	d, id, logger := p.d, p.id, p.logger
	if !p.started {
		if err := p.start(ctx); err != nil {
			return p.res, err
		}
	}
	p.res.StartedAt = time.Now()
	timer := time.NewTimer(timeout)
	defer timer.Stop()

	// The start is recorded before the function has its event: a start
	// that cannot be recorded leaves a process that never saw it.
	if onStart != nil {
		if err := onStart(id, p.res.ImageDigest); err != nil {
			d.kill(ctx, id, logger)
			return p.res, fmt.Errorf("runner: on start: %w", err)
		}
	}

	p.stdinStarted = true
	go func() {
		defer close(p.stdinDone)
		if len(input) > 0 {
			if _, err := p.hj.Conn.Write(input); err != nil {
				// The function exited without reading all of its input.
				logger.DebugContext(ctx, "write stdin", "error", err)
				return
			}
		}
		if err := p.hj.CloseWrite(); err != nil {
			logger.DebugContext(ctx, "close stdin", "error", err)
		}
	}()

	exitCode, exited, abandoned := int64(-1), false, false
	select {
	case w := <-p.waitC:
		p.waited, exitCode, exited = true, w.StatusCode, true
		if w.Error != nil && w.Error.Message != "" {
			logger.WarnContext(ctx, "wait reported an error", "error", w.Error.Message)
		}
	case err := <-p.waitErrC:
		p.waited = true
		d.kill(ctx, id, logger)
		return p.res, d.runErr(ctx, "wait container", err)
	case <-timer.C:
		p.res.TimedOut = true
	case <-p.limitHit:
		p.res.OutputLimited = true
	case <-ctx.Done():
		abandoned = true
	}
	if !exited {
		d.kill(ctx, id, logger)
		select {
		case w := <-p.waitC:
			p.waited, exitCode, exited = true, w.StatusCode, true
		case err := <-p.waitErrC:
			p.waited = true
			logger.WarnContext(ctx, "wait for killed container", "error", err)
		case <-time.After(killWait):
			logger.WarnContext(ctx, "killed container did not report its exit", "after", killWait)
		}
	}
	p.res.CompletedAt = time.Now()
	p.res.Duration = p.res.CompletedAt.Sub(p.res.StartedAt)
	p.res.Timings.Wait = p.res.Duration

	// The attach stream ends once the engine has copied the last output.
	select {
	case <-p.copyDone:
	case <-time.After(drainTimeout):
		logger.WarnContext(ctx, "output stream still open after exit", "after", drainTimeout)
		p.hj.Close()
		<-p.copyDone
	}
	if _, truncated := p.stdout.bytes(); truncated {
		p.res.OutputLimited = true
	}
	if _, truncated := p.stderr.bytes(); truncated {
		p.res.OutputLimited = true
	}

	t := time.Now()
	inspectCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), inspectTimeout)
	info, err := d.api.ContainerInspect(inspectCtx, id)
	cancel()
	p.res.Timings.Inspect = time.Since(t)
	switch {
	case err == nil && info.State != nil:
		p.res.ExitCode = info.State.ExitCode
		p.res.OOMKilled = info.State.OOMKilled
	case exited:
		logger.WarnContext(ctx, "inspect exited container", "error", err)
		p.res.ExitCode = int(exitCode)
	case !abandoned:
		return p.res, wrapEngineErr("inspect container", err)
	}
	if abandoned {
		return p.res, fmt.Errorf("runner: invocation abandoned: %w", ctx.Err())
	}
	logger.DebugContext(ctx, "invocation done", "exit_code", p.res.ExitCode, "error_type", p.res.ErrorType(),
		"duration", p.res.Duration)
	return p.res, nil
}
